#!/usr/bin/env bash
# Makes ready (once) what the report's browser test needs and prints the Python to run it with:
#  - Chromium at $CIMLAKE_CHROMIUM or /usr/bin/chromium: Debian's `chromium` package, installed
#    with apt-get when missing (as root, or with sudo);
#  - a virtual environment with Playwright for Python (requirements.txt), outside the checkout,
#    keyed by the requirements: $CIMLAKE_REPORT_VENV_DIR, else ~/.cache/cimlake/report-venv-<hash>.
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
python="${PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "error: $python not found: the report's browser test needs Python 3.9 or newer" >&2; exit 1; }
key="$( (cat "$here/requirements.txt"; "$python" --version) | sha256sum | cut -c1-12)"
dir="${CIMLAKE_REPORT_VENV_DIR:-${HOME:-/tmp}/.cache/cimlake/report-venv-$key}"
if [ "$(cat "$dir/.complete" 2>/dev/null)" != "$key" ]; then
    rm -rf "$dir"
    "$python" -m venv "$dir" >&2
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: -r "$here/requirements.txt" >&2
    echo "$key" > "$dir/.complete"
fi
echo "$dir/bin/python"
