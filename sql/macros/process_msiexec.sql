-- ESCU macro `process_msiexec`:
--   (Processes.process_name=msiexec.exe OR Processes.original_file_name=msiexec.exe)
-- Splunk compares field values case-insensitively, and Windows file names are case-insensitive,
-- so both modes match `MsiExec.exe` too. original_file_name catches a renamed copy.
lower(process_name) = 'msiexec.exe' OR lower(original_file_name) = 'msiexec.exe'
