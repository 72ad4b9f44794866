-- Windows HTTP Network Communication From MSIExec: cimlake semantics (the default mode).
--
-- Parameters (bound by cimlake):
--   $earliest, $latest   the search window for flows: earliest inclusive, latest exclusive
--   $process_earliest    $earliest minus the process look-back (--lookback, default 24h), so a
--                        process started before the window still matches its flows
--
-- A flow belongs to a process on the same endpoint (processes.dest = all_traffic.dvc) with the
-- same process_guid when both sides carry one, else with the same process_id. One row per process
-- instance and remote endpoint (dest_ip, dest_port), with the number of flows and the first and
-- last flow time. Nulls stay nulls.
WITH processes AS (
    SELECT *
    FROM endpoint.processes
    WHERE _time >= $process_earliest AND _time < $latest
      AND (`process_msiexec`)
),
traffic AS (
    SELECT *
    FROM network_traffic.all_traffic
    WHERE _time >= $earliest AND _time < $latest
      AND dest_port IN (80, 443)
),
pairs AS (
    -- Both sides carry a GUID: it alone identifies the process instance.
    SELECT p.*, t._time AS flow_time, t.dest_ip AS flow_dest_ip, t.dest_port AS flow_dest_port,
           t.dest_hostname AS flow_dest_hostname
    FROM processes p
    JOIN traffic t ON p.dest = t.dvc AND p.process_guid = t.process_guid
    UNION ALL
    -- Otherwise: same endpoint and process id.
    SELECT p.*, t._time AS flow_time, t.dest_ip AS flow_dest_ip, t.dest_port AS flow_dest_port,
           t.dest_hostname AS flow_dest_hostname
    FROM processes p
    JOIN traffic t ON p.dest = t.dvc AND p.process_id = t.process_id
    WHERE p.process_guid IS NULL OR t.process_guid IS NULL
),
results AS (
    SELECT
        _time,
        user,
        dest,
        parent_process_name,
        process_name,
        process_path,
        process,
        process_id,
        flow_dest_port AS dest_port,
        flow_dest_ip AS dest_ip,
        max(flow_dest_hostname) AS dest_hostname,
        process_guid,
        parent_process_id,
        original_file_name,
        count(*) AS count,
        min(flow_time) AS "firstTime",
        max(flow_time) AS "lastTime",
        source,
        source_record
    FROM pairs
    GROUP BY _time, user, dest, parent_process_name, process_name, process_path, process,
             process_id, flow_dest_port, flow_dest_ip, process_guid, parent_process_id,
             original_file_name, source, source_record
)
SELECT *
FROM results
WHERE (`windows_http_network_communication_from_msiexec_filter`)
ORDER BY _time, dest, process_id, dest_ip, dest_port
