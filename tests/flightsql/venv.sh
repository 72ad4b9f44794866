#!/usr/bin/env bash
# Makes (once) a Python virtual environment from a requirements file and prints its python.
#
#   venv.sh                       the Flight SQL client, the Delta reader and the S3 server of
#                                 requirements.txt beside this script: $CIMLAKE_VENV_DIR, else
#                                 ~/.cache/cimlake/venv-<hash>
#   venv.sh REQUIREMENTS NAME     another set (the report's browser driver): ~/.cache/cimlake/NAME-<hash>
#
# The environment lives outside the checkout, keyed by the requirements and the Python, so later
# runs reuse it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
requirements="${1:-$here/requirements.txt}"
python="${PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "error: $python not found: the tests that drive Python clients need Python 3.9 or newer" >&2; exit 1; }
key="$( (cat "$requirements"; "$python" --version) | sha256sum | cut -c1-12)"
if [ $# -ge 2 ]; then
    dir="${HOME:-/tmp}/.cache/cimlake/$2-$key"
else
    dir="${CIMLAKE_VENV_DIR:-${HOME:-/tmp}/.cache/cimlake/venv-$key}"
fi
if [ "$(cat "$dir/.complete" 2>/dev/null)" != "$key" ]; then
    rm -rf "$dir"
    "$python" -m venv "$dir" >&2
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: -r "$requirements" >&2
    echo "$key" > "$dir/.complete"
fi
echo "$dir/bin/python"
