#!/usr/bin/env bash
# Makes ready (once) what the report's browser test needs and prints the Python to run it with:
#  - Chromium at $CIMLAKE_CHROMIUM or /usr/bin/chromium: Debian's `chromium` package, installed
#    with apt-get when missing (as root, or with sudo);
#  - a virtual environment with Playwright for Python (requirements.txt), outside the checkout
#    (~/.cache/cimlake/report-venv-<hash>, made by tests/flightsql/venv.sh).
# Playwright drives the system Chromium; it downloads no browser of its own.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
chromium="${CIMLAKE_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
    command -v apt-get >/dev/null || { echo "error: $chromium not found and no apt-get to install Debian's chromium package" >&2; exit 1; }
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q chromium >&2 || { $sudo apt-get update -q >&2 && $sudo apt-get install -y -q chromium >&2; }
fi
bash "$here/../flightsql/venv.sh" "$here/requirements.txt" report-venv
