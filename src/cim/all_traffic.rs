//! `network_traffic.all_traffic`: the CIM `Network_Traffic.All_Traffic` dataset, one row per
//! reported flow, plus the extension columns that tie a flow to the process that made it.

crate::table! {
    /// One `network_traffic.all_traffic` row.
    pub struct TrafficRow / AllTrafficBuilder {
        /// When the flow was reported.
        time_us: Ts [super::TIME] not null;
        action: Utf8 ["action" => ACTION];
        app: Utf8 ["app" => APP];
        bytes: Int64 ["bytes" => BYTES];
        bytes_in: Int64 ["bytes_in" => BYTES_IN];
        bytes_out: Int64 ["bytes_out" => BYTES_OUT];
        /// The remote end: its host name when known, else its address.
        dest: Utf8 ["dest" => DEST];
        dest_ip: Utf8 ["dest_ip" => DEST_IP];
        dest_port: Int32 ["dest_port" => DEST_PORT];
        /// The endpoint that reported the flow.
        dvc: Utf8 ["dvc" => DVC];
        direction: Utf8 ["direction" => DIRECTION];
        protocol: Utf8 ["protocol" => PROTOCOL];
        protocol_version: Int32 ["protocol_version" => PROTOCOL_VERSION];
        src: Utf8 ["src" => SRC];
        src_ip: Utf8 ["src_ip" => SRC_IP];
        src_port: Int32 ["src_port" => SRC_PORT];
        transport: Utf8 ["transport" => TRANSPORT];
        user: Utf8 ["user" => USER];
        vendor_product: Utf8 ["vendor_product" => VENDOR_PRODUCT];
        process_id: Int64 ["process_id" => PROCESS_ID];
        /// Extension column (not in CIM's All_Traffic): what makes the join correct.
        process_guid: Utf8 ["process_guid" => PROCESS_GUID];
        /// Extension column.
        process_name: Utf8 ["process_name" => PROCESS_NAME];
        /// Extension column.
        process_path: Utf8 ["process_path" => PROCESS_PATH];
        /// Extension column.
        dest_hostname: Utf8 ["dest_hostname" => DEST_HOSTNAME];
        /// The rest of what a network connection event says (Sysmon EID 3), for rules that match
        /// on it: whether this host opened the connection,
        initiated: Bool ["initiated" => INITIATED];
        /// the local end's host name, each end's IP version and port name,
        src_hostname: Utf8 ["src_hostname" => SRC_HOSTNAME];
        src_is_ipv6: Bool ["src_is_ipv6" => SRC_IS_IPV6];
        dest_is_ipv6: Bool ["dest_is_ipv6" => DEST_IS_IPV6];
        src_port_name: Utf8 ["src_port_name" => SRC_PORT_NAME];
        dest_port_name: Utf8 ["dest_port_name" => DEST_PORT_NAME];
        /// and the name of the Sysmon configuration rule that logged it.
        rule_name: Utf8 ["rule_name" => RULE_NAME];
        provenance: Provenance [""];
    }
}
