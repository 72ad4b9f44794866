#!/usr/bin/env bash
# The same statements in process and on a Ballista cluster (one scheduler and EXECUTORS
# executors, all on this machine, started from the same binary), alternating, ROUNDS rounds.
# Each run is a whole `cimlake` process: planning, the job, and the rows written to a file.
# Checks that both engines wrote the same bytes, then prints the median wall time of each and
# the ratio.
#
#   bash benches/cluster/compare.sh LAKE [ROUNDS] [EXECUTORS] [CIMLAKE]
set -euo pipefail
lake=$1
rounds=${2:-5}
executors=${3:-2}
cimlake=${4:-target/release/cimlake}
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

"$cimlake" cluster scheduler --bind 127.0.0.1:0 > "$work/scheduler.out" 2> "$work/scheduler.err" &
pids+=($!)
until grep -q "listening on" "$work/scheduler.out"; do sleep 0.1; done
scheduler=$(sed -n 's/^scheduler listening on //p' "$work/scheduler.out")
cores=$(nproc)
vcores=$(( cores / executors > 0 ? cores / executors : 1 ))
for ((i = 0; i < executors; i++)); do
    "$cimlake" cluster executor --scheduler "$scheduler" --bind 127.0.0.1:0 --vcores "$vcores" \
        --work-dir "$work/executor$i" > "$work/executor$i.out" 2> "$work/executor$i.err" &
    pids+=($!)
done
for ((i = 0; i < executors; i++)); do
    until grep -q "registered with" "$work/executor$i.out"; do sleep 0.1; done
done
engine="ballista://$scheduler"

now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

bench() { # NAME ARGS…
    local name=$1
    shift
    local local_times=() cluster_times=()
    for ((i = 0; i < rounds; i++)); do
        local t0 t1 t2
        t0=$(now)
        "$cimlake" --lake "$lake" "$@" -o "$work/local.out" > /dev/null
        t1=$(now)
        "$cimlake" --lake "$lake" "$@" -o "$work/cluster.out" --engine "$engine" > /dev/null
        t2=$(now)
        cmp -s "$work/local.out" "$work/cluster.out" || { echo "$name: the engines' outputs differ" >&2; exit 1; }
        local_times+=("$(echo "$t1 - $t0" | bc -l)")
        cluster_times+=("$(echo "$t2 - $t1" | bc -l)")
    done
    local l c
    l=$(printf '%s\n' "${local_times[@]}" | median)
    c=$(printf '%s\n' "${cluster_times[@]}" | median)
    printf '%-28s in-process %8.3f s   cluster %8.3f s   cluster / in-process %.2fx   (%d rows)\n' \
        "$name" "$l" "$c" "$(echo "$c / $l" | bc -l)" "$(($(wc -l < "$work/local.out") - 1))"
}

echo "lake $lake; $executors executors x $vcores vcores on $cores cores; median of $rounds"
bench "detect (cimlake mode)" detect --format csv
bench "detect (splunk mode)" detect --mode splunk --format csv
bench "query: flows per port" query "SELECT dest_port, count(*) AS n FROM network_traffic.all_traffic GROUP BY dest_port ORDER BY n DESC, dest_port" --format csv
bench "query: processes per host" query "SELECT dest, count(*) AS n FROM endpoint.processes GROUP BY dest ORDER BY n DESC, dest" --format csv
