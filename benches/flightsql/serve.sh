# Sourced by the Flight SQL benches: start_server LAKE CIMLAKE [OPEN_FILES] starts
# `cimlake serve` on loopback with a random token and sets $url, $token, $pid and $work (a
# temporary directory removed, with the server stopped, on exit). OPEN_FILES, when given, is the
# server's open-files limit (soft and hard).
start_server() {
    local lake=$1 cimlake=$2 open_files=${3:-}
    work=$(mktemp -d)
    token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
    (
        [ -n "$open_files" ] && ulimit -n "$open_files"
        CIMLAKE_TOKEN=$token exec "$cimlake" --lake "$lake" serve --listen 127.0.0.1:0
    ) > "$work/serve.out" 2> "$work/serve.err" &
    pid=$!
    trap 'kill -TERM $pid 2>/dev/null || true; rm -rf "$work"' EXIT
    for ((t = 0; t < 600; t++)); do
        grep -q "serving Flight SQL on" "$work/serve.out" && break
        kill -0 $pid 2>/dev/null || { cat "$work/serve.err" >&2; exit 1; }
        sleep 0.1
    done
    url=$(sed -n 's/^serving Flight SQL on \([^ ]*\).*/\1/p' "$work/serve.out")
    [ -n "$url" ] || { echo "the server did not start in 60 s" >&2; cat "$work/serve.err" >&2; exit 1; }
}
