-- Filter for "Windows HTTP Network Communication From MSIExec" (ESCU's
-- `windows_http_network_communication_from_msiexec_filter`, default `search *`).
-- A SQL boolean expression over the detection's output columns; rows where it is not true are
-- dropped. Edit it to remove known false positives without touching the detection, e.g.:
--   dest_ip NOT IN ('10.0.0.5') AND process NOT LIKE '%\\SCCM\\%'
true
