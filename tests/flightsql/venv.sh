#!/usr/bin/env bash
# Makes (once) a Python virtual environment with the Flight SQL client of requirements.txt and
# prints its python. The environment lives outside the checkout, keyed by the requirements, so
# later runs reuse it: $CIMLAKE_VENV_DIR, else ~/.cache/cimlake/venv-<hash>.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "error: $python not found: the Flight SQL tests need Python 3.9 or newer" >&2; exit 1; }
key="$( (cat "$here/requirements.txt"; "$python" --version) | sha256sum | cut -c1-12)"
dir="${CIMLAKE_VENV_DIR:-${HOME:-/tmp}/.cache/cimlake/venv-$key}"
if [ "$(cat "$dir/.complete" 2>/dev/null)" != "$key" ]; then
    rm -rf "$dir"
    "$python" -m venv "$dir" >&2
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: -r "$here/requirements.txt" >&2
    echo "$key" > "$dir/.complete"
fi
echo "$dir/bin/python"
