#!/usr/bin/env bash
# Starts `cimlake serve` on LAKE and runs compare.py against it (see there for what is compared).
#
#   bash benches/flightsql/compare.sh LAKE [ROUNDS] [CIMLAKE]
#
# The client comes from tests/flightsql/venv.sh (PyPI).
set -euo pipefail
lake=$1
rounds=${2:-5}
cimlake=${3:-target/release/cimlake}
python=$(bash "$(dirname "$0")/../../tests/flightsql/venv.sh")
work=$(mktemp -d)
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
CIMLAKE_TOKEN=$token "$cimlake" --lake "$lake" serve --listen 127.0.0.1:0 > "$work/serve.out" 2> "$work/serve.err" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for ((t = 0; t < 600; t++)); do
    grep -q "serving Flight SQL on" "$work/serve.out" && break
    kill -0 $pid 2>/dev/null || { cat "$work/serve.err" >&2; exit 1; }
    sleep 0.1
done
url=$(sed -n 's/^serving Flight SQL on \([^ ]*\).*/\1/p' "$work/serve.out")
[ -n "$url" ] || { echo "the server did not start in 60 s" >&2; cat "$work/serve.err" >&2; exit 1; }
"$python" "$(dirname "$0")/compare.py" "$url" "$token" "$lake" "$cimlake" "$rounds"
