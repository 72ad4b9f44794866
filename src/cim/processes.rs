//! `endpoint.processes`: the CIM `Endpoint.Processes` dataset, one row per process start.

use super::file_name_of;

crate::table! {
    /// One `endpoint.processes` row. A converter leaves `process_exec`/`process_name` and their
    /// parent counterparts empty unless the source names the process apart from its path;
    /// [`ProcessRow::with_names_from_paths`] fills them from the paths.
    pub struct ProcessRow / ProcessesBuilder {
        /// When the process started.
        time_us: Ts [super::TIME] not null;
        action: Utf8 ["action" => ACTION];
        /// The endpoint.
        dest: Utf8 ["dest" => DEST];
        original_file_name: Utf8 ["original_file_name" => ORIGINAL_FILE_NAME];
        parent_process: Utf8 ["parent_process" => PARENT_PROCESS];
        parent_process_exec: Utf8 ["parent_process_exec" => PARENT_PROCESS_EXEC];
        parent_process_guid: Utf8 ["parent_process_guid" => PARENT_PROCESS_GUID];
        parent_process_id: Int64 ["parent_process_id" => PARENT_PROCESS_ID];
        parent_process_name: Utf8 ["parent_process_name" => PARENT_PROCESS_NAME];
        parent_process_path: Utf8 ["parent_process_path" => PARENT_PROCESS_PATH];
        /// The command line.
        process: Utf8 ["process" => PROCESS];
        process_exec: Utf8 ["process_exec" => PROCESS_EXEC];
        process_guid: Utf8 ["process_guid" => PROCESS_GUID];
        process_hash: Utf8 ["process_hash" => PROCESS_HASH];
        process_id: Int64 ["process_id" => PROCESS_ID];
        process_integrity_level: Utf8 ["process_integrity_level" => PROCESS_INTEGRITY_LEVEL];
        process_current_directory: Utf8 ["process_current_directory" => PROCESS_CURRENT_DIRECTORY];
        process_name: Utf8 ["process_name" => PROCESS_NAME];
        process_path: Utf8 ["process_path" => PROCESS_PATH];
        user: Utf8 ["user" => USER];
        user_id: Utf8 ["user_id" => USER_ID];
        vendor_product: Utf8 ["vendor_product" => VENDOR_PRODUCT];
        /// The rest of what a process creation event says (Sysmon EID 1), for rules that match
        /// on it: the image's version resource,
        process_file_version: Utf8 ["process_file_version" => PROCESS_FILE_VERSION];
        process_description: Utf8 ["process_description" => PROCESS_DESCRIPTION];
        process_product: Utf8 ["process_product" => PROCESS_PRODUCT];
        process_company: Utf8 ["process_company" => PROCESS_COMPANY];
        /// each hash of `process_hash` on its own (upper-case hex),
        process_md5: Utf8 ["process_md5" => PROCESS_MD5];
        process_sha1: Utf8 ["process_sha1" => PROCESS_SHA1];
        process_sha256: Utf8 ["process_sha256" => PROCESS_SHA256];
        process_imphash: Utf8 ["process_imphash" => PROCESS_IMPHASH];
        /// the logon session and the parent's user,
        logon_id: Utf8 ["logon_id" => LOGON_ID];
        logon_guid: Utf8 ["logon_guid" => LOGON_GUID];
        terminal_session_id: Int64 ["terminal_session_id" => TERMINAL_SESSION_ID];
        parent_user: Utf8 ["parent_user" => PARENT_USER];
        /// and the name of the Sysmon configuration rule that logged it.
        rule_name: Utf8 ["rule_name" => RULE_NAME];
        provenance: Provenance [""];
    }
}

impl<'a> ProcessRow<'a> {
    /// The row with `process_exec` and `process_name` (and the parent's) set to the name the source
    /// gave, else the file name part of the path.
    pub fn with_names_from_paths(mut self) -> Self {
        let name = self.process_name.or(self.process_path.map(file_name_of));
        let parent = self.parent_process_name.or(self.parent_process_path.map(file_name_of));
        (self.process_exec, self.process_name) = (name, name);
        (self.parent_process_exec, self.parent_process_name) = (parent, parent);
        self
    }
}
