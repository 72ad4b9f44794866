#!/usr/bin/env bash
# The report on a window of ~54,000 hits: a generated day (300 hosts, 20,000 processes, ~80,000
# flows), every window of it scheduled with the bundled Sigma rules (one of which matches every
# connection to port 80 or 443), then `cimlake report` of the day, timed in headless Chromium.
#
#   benches/report/run.sh [CIMLAKE_BINARY] [WORK_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${1:-$repo/target/release/cimlake}"
work="${2:-$(mktemp -d)}"
python="$(bash "$repo/tests/report/setup.sh")"
lake="$work/lake"
rm -rf "$lake" "$work/gen"
"$bin" --lake "$lake" gen --out "$work/gen" --seed 5 --hosts 300 --processes 20000 --flows-per-process 4 --hours 24 --start 2026-11-10T00:00:00Z
"$bin" --lake "$lake" schedule --sql-dir "$repo/data/sigma" --backfill 2026-11-10T00:00:00Z 2026-11-11T01:00:00Z > "$work/schedule.log"
/usr/bin/time -f "report built in %e s, %M KiB peak" "$bin" --lake "$lake" report --sql-dir "$repo/data/sigma" \
    --earliest 2026-11-09T23:50:00Z --latest 2026-11-11T00:00:00Z -o "$work/report.html"
"$python" "$here/render.py" "$work/report.html" 5
