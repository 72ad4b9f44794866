-- Windows HTTP Network Communication From MSIExec: cimlake semantics (the default mode).
--
-- Parameters (bound by cimlake):
--   $earliest, $latest   the search window for flows: earliest inclusive, latest exclusive
--   $process_earliest    $earliest minus the process look-back (--lookback, default 24h), so a
--                        process started before the window still matches its flows
--
-- A flow belongs to a process on the same endpoint (processes.dest = all_traffic.dvc) with the
-- same process_id, and the same process_guid when both sides carry one from the same product
-- (Sysmon's ProcessGuid and NVM's puid are different identifiers), else a process start no later
-- than the flow. Where either side has no process_id, the GUID alone (same product) decides.
-- A GUID names one process instance, which has one process id, so this is "the GUID where both
-- carry one, else the process id", written as one join on the id plus two GUID-only joins that
-- Parquet statistics skip when every row carries an id; the flow table is read once.
-- Each join is written with the side to hash on the left (few processes; the rare rows without a
-- process id), and detection.toml keeps that order (`join_reordering = false`): when that side is
-- empty, the other is never read. The processes are read with the columns the results show only,
-- so the scan decodes those and not the other 25 (hashes, parent command line, …).
--
-- One row per process instance and remote endpoint (dest_ip, dest_port), with the number of
-- flows and the first and last flow time. Nulls stay nulls.
WITH processes AS (
    -- One row per process instance: a process seen in several inputs (NVM reports it with each
    -- file of flows) counts once, from its first observation (one without a process id first,
    -- so that an instance is in processes_without_id below exactly when it is here without one).
    -- A Windows Security 4688 event and a Sysmon process creation of the same endpoint, process
    -- id and image no more than 5 seconds apart are one process seen by both: the Sysmon row,
    -- which carries the GUID, hashes and more, stands for it.
    SELECT * EXCLUDE (seen_by_sysmon) FROM (
        SELECT _time, dest, user, process_name, process_path, process, process_id, process_guid,
               parent_process_name, parent_process_id, original_file_name, vendor_product, source,
               source_record,
            row_number() OVER (
            PARTITION BY dest, coalesce(process_guid,
                concat_ws('|', CAST(process_id AS VARCHAR), CAST(_time AS VARCHAR), process_path))
            ORDER BY process_id IS NOT NULL, _time, source, source_record) AS instance_rank,
            max(CASE WHEN vendor_product = 'Microsoft Sysmon' THEN 1 ELSE 0 END) OVER (
                PARTITION BY dest, process_id, lower(process_path) ORDER BY _time
                RANGE BETWEEN INTERVAL '5 seconds' PRECEDING AND INTERVAL '5 seconds' FOLLOWING
            ) AS seen_by_sysmon
        FROM endpoint.processes
        WHERE _time >= $process_earliest AND _time < $latest
          AND (`process_msiexec`)
    ) ranked
    WHERE instance_rank = 1
      AND NOT (vendor_product = 'Microsoft Windows' AND seen_by_sysmon = 1)
),
processes_without_id AS (
    -- The instances above whose chosen row has no process id. The filter is applied in the scan,
    -- so Parquet statistics skip every file whose processes all carry an id.
    SELECT * FROM (
        SELECT _time, dest, user, process_name, process_path, process, process_id, process_guid,
               parent_process_name, parent_process_id, original_file_name, vendor_product, source,
               source_record,
            row_number() OVER (
            PARTITION BY dest, coalesce(process_guid,
                concat_ws('|', CAST(process_id AS VARCHAR), CAST(_time AS VARCHAR), process_path))
            ORDER BY _time, source, source_record) AS instance_rank
        FROM endpoint.processes
        WHERE _time >= $process_earliest AND _time < $latest
          AND process_id IS NULL
          AND (`process_msiexec`)
    ) ranked
    WHERE instance_rank = 1
),
traffic AS (
    SELECT _time, dvc, process_id, process_guid, vendor_product, transport, src_ip, src_port,
           dest_ip, dest_port, dest_hostname
    FROM network_traffic.all_traffic
    WHERE _time >= $earliest AND _time < $latest
      AND dest_port IN (80, 443)
),
pairs AS (
    -- Both sides carry a process id: one join on the endpoint and the id. When both also carry a
    -- GUID from the same product, the GUID must match too; otherwise the process must have
    -- started by the time of the flow.
    SELECT p.*, t._time AS flow_time, t.transport AS flow_transport, t.src_ip AS flow_src_ip,
           t.src_port AS flow_src_port, t.dest_ip AS flow_dest_ip, t.dest_port AS flow_dest_port,
           t.dest_hostname AS flow_dest_hostname
    FROM processes p
    JOIN traffic t ON p.dest = t.dvc AND p.process_id = t.process_id
    WHERE CASE
        WHEN p.process_guid IS NOT NULL AND t.process_guid IS NOT NULL AND p.vendor_product = t.vendor_product
            THEN p.process_guid = t.process_guid
        ELSE p._time <= t._time
    END
    UNION ALL
    -- A flow without a process id: its GUID alone (same product). The filter on the flow side
    -- is read from Parquet statistics, so files without such flows are skipped.
    SELECT p.*, t._time AS flow_time, t.transport AS flow_transport, t.src_ip AS flow_src_ip,
           t.src_port AS flow_src_port, t.dest_ip AS flow_dest_ip, t.dest_port AS flow_dest_port,
           t.dest_hostname AS flow_dest_hostname
    FROM (SELECT * FROM traffic WHERE process_id IS NULL) t
    JOIN processes p
      ON p.dest = t.dvc AND p.process_guid = t.process_guid AND p.vendor_product = t.vendor_product
    UNION ALL
    -- A process without a process id: its GUID alone (same product).
    SELECT p.*, t._time AS flow_time, t.transport AS flow_transport, t.src_ip AS flow_src_ip,
           t.src_port AS flow_src_port, t.dest_ip AS flow_dest_ip, t.dest_port AS flow_dest_port,
           t.dest_hostname AS flow_dest_hostname
    FROM processes_without_id p
    JOIN traffic t
      ON p.dest = t.dvc AND p.process_guid = t.process_guid AND p.vendor_product = t.vendor_product
    WHERE t.process_id IS NOT NULL
),
flows AS (
    -- One row per connection: a connection reported by several inputs (NVM stages split across
    -- files) counts once. Done on the matched pairs, which are few.
    SELECT DISTINCT * FROM pairs
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
    FROM flows
    GROUP BY _time, user, dest, parent_process_name, process_name, process_path, process,
             process_id, flow_dest_port, flow_dest_ip, process_guid, parent_process_id,
             original_file_name, source, source_record
)
SELECT *
FROM results
WHERE (`windows_http_network_communication_from_msiexec_filter`)
ORDER BY _time, dest, process_id, dest_ip, dest_port
