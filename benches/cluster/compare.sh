#!/usr/bin/env bash
# The same statements in process and on a Ballista cluster: one scheduler and EXECUTORS executors,
# all on this machine, started from the same binary. Each run is a whole `cimlake` process:
# start-up, planning, the job, and the rows written to a file. One warm-up run of each, then ROUNDS
# rounds alternating which engine goes first. Both engines must write the same bytes. Prints the
# median wall time of each and the ratio.
#
# On one machine this measures what the cluster costs (planning, stages, shuffles, Flight), not
# how it scales.
#
#   bash benches/cluster/compare.sh LAKE [ROUNDS] [EXECUTORS] [CIMLAKE]
#
# CIMLAKE_BENCH_ONLY=PATTERN runs only the statements whose name matches (grep -E).
set -euo pipefail
lake=$1
rounds=${2:-5}
executors=${3:-2}
cimlake=${4:-target/release/cimlake}
detection=windows_http_network_communication_from_msiexec
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# Waits up to 60 s for PATTERN in FILE, while process PID lives.
wait_for() { # FILE PATTERN PID
    for ((t = 0; t < 600; t++)); do
        grep -q "$2" "$1" && return 0
        kill -0 "$3" 2>/dev/null || { echo "$1: process exited" >&2; cat "${1%.out}.err" >&2; exit 1; }
        sleep 0.1
    done
    echo "$1: no '$2' in 60 s" >&2
    exit 1
}

"$cimlake" cluster scheduler --bind 127.0.0.1:0 > "$work/scheduler.out" 2> "$work/scheduler.err" &
pids+=($!)
wait_for "$work/scheduler.out" "listening on" "$!"
scheduler=$(sed -n 's/^scheduler listening on //p' "$work/scheduler.out")
cores=$(nproc)
vcores=$(( cores / executors > 0 ? cores / executors : 1 ))
for ((i = 0; i < executors; i++)); do
    "$cimlake" cluster executor --scheduler "$scheduler" --bind 127.0.0.1:0 --vcores "$vcores" \
        --work-dir "$work" > "$work/executor$i.out" 2> "$work/executor$i.err" &
    pids+=($!)
    wait_for "$work/executor$i.out" "registered with" "$!"
done
engine="ballista://$scheduler"

now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
run() { # ENGINE OUT ARGS…: prints the wall time
    local engine=$1 out=$2 t0 t1
    shift 2
    t0=$(now)
    "$cimlake" --lake "$lake" "$@" -o "$out" --engine "$engine" > /dev/null
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

bench() { # NAME ARGS…
    local name=$1
    shift
    if [[ -n ${CIMLAKE_BENCH_ONLY:-} ]] && ! grep -qE "$CIMLAKE_BENCH_ONLY" <<< "$name"; then
        return 0
    fi
    local local_times=() cluster_times=()
    run in-process "$work/local.out" "$@" > /dev/null
    run "$engine" "$work/cluster.out" "$@" > /dev/null
    for ((i = 0; i < rounds; i++)); do
        if ((i % 2 == 0)); then
            local_times+=("$(run in-process "$work/local.out" "$@")")
            cluster_times+=("$(run "$engine" "$work/cluster.out" "$@")")
        else
            cluster_times+=("$(run "$engine" "$work/cluster.out" "$@")")
            local_times+=("$(run in-process "$work/local.out" "$@")")
        fi
        cmp -s "$work/local.out" "$work/cluster.out" || { echo "$name: the engines' outputs differ" >&2; exit 1; }
    done
    local l c
    l=$(printf '%s\n' "${local_times[@]}" | median)
    c=$(printf '%s\n' "${cluster_times[@]}" | median)
    awk -v n="$name" -v l="$l" -v c="$c" -v rows="$(($(wc -l < "$work/local.out") - 1))" \
        'BEGIN { printf "%-28s in-process %8.3f s   cluster %8.3f s   cluster / in-process %.2fx   (%d rows)\n", n, l, c, c / l, rows }'
}

echo "lake $lake; $executors executors x $vcores vcores on $cores cores; ${DATAFUSION_EXECUTION_TARGET_PARTITIONS:-16} partitions per cluster stage; median of $rounds after a warm-up"
bench "detect (cimlake mode)" detect --detection "$detection" --format csv
bench "detect (splunk mode)" detect --detection "$detection" --mode splunk --format csv
bench "query: flows per port" query "SELECT dest_port, count(*) AS n FROM network_traffic.all_traffic GROUP BY dest_port ORDER BY n DESC, dest_port" --format csv
bench "query: processes per host" query "SELECT dest, count(*) AS n FROM endpoint.processes GROUP BY dest ORDER BY n DESC, dest" --format csv
