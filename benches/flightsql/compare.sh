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
source "$(dirname "$0")/serve.sh"
start_server "$lake" "$cimlake"
"$python" "$(dirname "$0")/compare.py" "$url" "$token" "$lake" "$cimlake" "$rounds"
