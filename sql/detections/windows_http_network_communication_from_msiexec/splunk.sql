-- Windows HTTP Network Communication From MSIExec: Splunk-compatible semantics.
-- Reproduces what the ESCU search returns in Splunk, quirks included:
--
--   | tstats count FROM datamodel=Endpoint.Processes where `process_msiexec`
--       by _time Processes.action Processes.dest ... (fillnull_value=null)
--   | join process_id [ | tstats count FROM datamodel=Network_Traffic.All_Traffic
--       where All_Traffic.dest_port IN ("80","443") by All_Traffic.action ... ]
--   | table _time user dest parent_process_name process_name process_path process
--       process_id dest_port dest_ip
--
-- * fillnull_value=null: a missing group-by value becomes the string 'null' (so flows without
--   byte counts survive, and a missing process_id on both sides joins as 'null' = 'null').
-- * join process_id: inner join on process_id alone (across hosts, across pid reuse), max=1:
--   each process row keeps only the first network row with its process_id, in tstats order
--   (sorted by the by-fields).
-- * overwrite=true: the network side's dest, user, action, vendor_product and count replace the
--   process side's, so `dest` is the remote destination, not the endpoint.
--
-- Parameters: $earliest (inclusive) and $latest (exclusive), for both sides.
WITH processes AS (
    SELECT _time, action, dest, original_file_name, parent_process, parent_process_exec,
           parent_process_guid, parent_process_id, parent_process_name, parent_process_path,
           process, process_exec, process_guid, process_hash, process_id,
           process_integrity_level, process_name, process_path, user, user_id, vendor_product,
           count(*) AS count
    FROM (
        SELECT _time,
               coalesce(action, 'null') AS action,
               coalesce(dest, 'null') AS dest,
               coalesce(original_file_name, 'null') AS original_file_name,
               coalesce(parent_process, 'null') AS parent_process,
               coalesce(parent_process_exec, 'null') AS parent_process_exec,
               coalesce(parent_process_guid, 'null') AS parent_process_guid,
               coalesce(CAST(parent_process_id AS VARCHAR), 'null') AS parent_process_id,
               coalesce(parent_process_name, 'null') AS parent_process_name,
               coalesce(parent_process_path, 'null') AS parent_process_path,
               coalesce(process, 'null') AS process,
               coalesce(process_exec, 'null') AS process_exec,
               coalesce(process_guid, 'null') AS process_guid,
               coalesce(process_hash, 'null') AS process_hash,
               coalesce(CAST(process_id AS VARCHAR), 'null') AS process_id,
               coalesce(process_integrity_level, 'null') AS process_integrity_level,
               coalesce(process_name, 'null') AS process_name,
               coalesce(process_path, 'null') AS process_path,
               coalesce(user, 'null') AS user,
               coalesce(user_id, 'null') AS user_id,
               coalesce(vendor_product, 'null') AS vendor_product
        FROM endpoint.processes
        WHERE _time >= $earliest AND _time < $latest
          AND (`process_msiexec`)
    ) filled
    GROUP BY _time, action, dest, original_file_name, parent_process, parent_process_exec,
             parent_process_guid, parent_process_id, parent_process_name, parent_process_path,
             process, process_exec, process_guid, process_hash, process_id,
             process_integrity_level, process_name, process_path, user, user_id, vendor_product
),
traffic AS (
    SELECT action, app, bytes, bytes_in, bytes_out, dest, dest_ip, dest_port, dvc, protocol,
           protocol_version, src, src_ip, src_port, transport, user, vendor_product, direction,
           process_id, count(*) AS count
    FROM (
        SELECT coalesce(action, 'null') AS action,
               coalesce(app, 'null') AS app,
               coalesce(CAST(bytes AS VARCHAR), 'null') AS bytes,
               coalesce(CAST(bytes_in AS VARCHAR), 'null') AS bytes_in,
               coalesce(CAST(bytes_out AS VARCHAR), 'null') AS bytes_out,
               coalesce(dest, 'null') AS dest,
               coalesce(dest_ip, 'null') AS dest_ip,
               coalesce(CAST(dest_port AS VARCHAR), 'null') AS dest_port,
               coalesce(dvc, 'null') AS dvc,
               coalesce(protocol, 'null') AS protocol,
               coalesce(CAST(protocol_version AS VARCHAR), 'null') AS protocol_version,
               coalesce(src, 'null') AS src,
               coalesce(src_ip, 'null') AS src_ip,
               coalesce(CAST(src_port AS VARCHAR), 'null') AS src_port,
               coalesce(transport, 'null') AS transport,
               coalesce(user, 'null') AS user,
               coalesce(vendor_product, 'null') AS vendor_product,
               coalesce(direction, 'null') AS direction,
               coalesce(CAST(process_id AS VARCHAR), 'null') AS process_id
        FROM network_traffic.all_traffic
        WHERE _time >= $earliest AND _time < $latest
          -- dest_port IN ("80","443"); a null port is never 80 or 443, so filtering before the
          -- fill is the same and lets Parquet statistics prune.
          AND dest_port IN (80, 443)
    ) filled
    GROUP BY action, app, bytes, bytes_in, bytes_out, dest, dest_ip, dest_port, dvc, protocol,
             protocol_version, src, src_ip, src_port, transport, user, vendor_product, direction,
             process_id
),
first_flow AS (
    -- max=1: the first network row per process_id, in tstats' by-field order.
    SELECT * FROM (
        SELECT *, row_number() OVER (
            PARTITION BY process_id
            ORDER BY action, app, bytes, bytes_in, bytes_out, dest, dest_ip, dest_port, dvc,
                     protocol, protocol_version, src, src_ip, src_port, transport, user,
                     vendor_product, direction
        ) AS join_rank
        FROM traffic
    ) ranked
    WHERE join_rank = 1
),
results AS (
    SELECT p._time,
           t.user,
           t.dest,
           p.parent_process_name,
           p.process_name,
           p.process_path,
           p.process,
           p.process_id,
           t.dest_port,
           t.dest_ip
    FROM processes p
    JOIN first_flow t ON p.process_id = t.process_id
)
SELECT *
FROM results
WHERE (`windows_http_network_communication_from_msiexec_filter`)
ORDER BY _time, dest, process_id, dest_ip, dest_port
