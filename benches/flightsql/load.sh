#!/usr/bin/env bash
# Loads `cimlake serve` on LAKE with CLIENTS connections at once, each running QUERIES statements
# (the detection view and two aggregates in turn, `tests/flightsql/client.py load`), and reports
# how many were answered, their latency, and the server's peak open descriptors and memory.
#
#   bash benches/flightsql/load.sh LAKE CLIENTS QUERIES [CIMLAKE] [OPEN_FILES]
#
# OPEN_FILES, when given, is the server's open-files limit (soft and hard), as on a machine that
# allows no more (many allow 1,024). The client comes from tests/flightsql/venv.sh (PyPI).
set -euo pipefail
lake=$1
clients=$2
queries=$3
cimlake=${4:-target/release/cimlake}
open_files=${5:-}
here=$(cd "$(dirname "$0")" && pwd)
python=$(bash "$here/../../tests/flightsql/venv.sh")
source "$here/serve.sh"
start_server "$lake" "$cimlake" "$open_files"
# The server's descriptors and peak memory, sampled every 100 ms while the load runs.
(
    while kill -0 $pid 2>/dev/null; do
        echo "$(ls /proc/$pid/fd 2>/dev/null | wc -l) $(awk '/VmHWM/ {print $2}' /proc/$pid/status 2>/dev/null)"
        sleep 0.1
    done
) > "$work/monitor" &
started=$(date +%s.%N)
"$python" "$here/../../tests/flightsql/client.py" "$url" --token "$token" load "$clients" "$queries" > "$work/report.json"
ended=$(date +%s.%N)
"$python" - "$work/report.json" "$work/monitor" "$started" "$ended" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
samples = [line.split() for line in open(sys.argv[2]) if len(line.split()) == 2]
seconds = sorted(report["seconds"])
pick = lambda q: seconds[min(len(seconds) - 1, int(q * len(seconds)))]
print(f"answered {report['total'] - report['failed']} of {report['total']}; "
      f"p50 {pick(0.5):.2f} s, p99 {pick(0.99):.2f} s; wall {float(sys.argv[4]) - float(sys.argv[3]):.1f} s; "
      f"peak descriptors {max(int(s[0]) for s in samples)}, peak RSS {max(int(s[1]) for s in samples) // 1024} MiB")
for e in sorted(set(report["errors"]))[:3]:
    print("  error:", e[:300])
EOF
