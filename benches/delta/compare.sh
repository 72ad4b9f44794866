#!/usr/bin/env bash
# Two cimlake binaries side by side on the same lake and the same input: BEFORE (say, a build of
# an earlier commit) and AFTER. Each run is a whole `cimlake` process, timed from outside. One
# warm-up run of each, then ROUNDS rounds alternating which binary goes first. Both must write
# the same bytes. Prints the median wall time of each and the ratio AFTER / BEFORE.
#
#   bash benches/delta/compare.sh BEFORE AFTER LAKE INPUT [ROUNDS]
#
# LAKE is read only (the detection over the whole lake, and two one-hour windows). INPUT is a
# log file ingested into a new lake by each binary in turn (ingest throughput); the new lakes
# must give the same row counts.
set -euo pipefail
before=$1
after=$2
lake=$3
input=$4
rounds=${5:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
run() { # BINARY OUT ARGS…: prints the wall time
    local bin=$1 out=$2 t0 t1
    shift 2
    t0=$(now)
    "$bin" "$@" > "$out" 2> /dev/null
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

report() { # NAME BEFORE_TIMES AFTER_TIMES
    local b a
    b=$(tr ' ' '\n' <<< "$2" | median)
    a=$(tr ' ' '\n' <<< "$3" | median)
    printf '%-48s before %8.3f s   after %8.3f s   after/before %.3f\n' "$1" "$b" "$a" "$(awk -v a="$a" -v b="$b" 'BEGIN { print a / b }')"
}

bench() { # NAME ARGS… (run with --lake LAKE)
    local name=$1 bt=() at=()
    shift
    run "$before" "$work/b.out" --lake "$lake" "$@" > /dev/null
    run "$after" "$work/a.out" --lake "$lake" "$@" > /dev/null
    for ((i = 0; i < rounds; i++)); do
        if ((i % 2 == 0)); then
            bt+=("$(run "$before" "$work/b.out" --lake "$lake" "$@")")
            at+=("$(run "$after" "$work/a.out" --lake "$lake" "$@")")
        else
            at+=("$(run "$after" "$work/a.out" --lake "$lake" "$@")")
            bt+=("$(run "$before" "$work/b.out" --lake "$lake" "$@")")
        fi
        cmp -s "$work/b.out" "$work/a.out" || { echo "$name: the two binaries wrote different output" >&2; exit 1; }
    done
    report "$name" "${bt[*]}" "${at[*]}"
}

ingest() { # BINARY: ingests INPUT into a new lake, prints the wall time
    local bin=$1 t
    rm -rf "$work/ingest-lake"
    t=$(run "$bin" "$work/ingest.out" --lake "$work/ingest-lake" ingest -j 2 "$input")
    "$bin" --lake "$work/ingest-lake" query "SELECT (SELECT count(*) FROM endpoint.processes) AS p, (SELECT count(*) FROM network_traffic.all_traffic) AS t" --format csv > "$work/counts.$(basename "$bin")"
    echo "$t"
}

bench "detect, whole lake" detect --format csv
bench "detect, 2026-11-08 12:00-13:00 (24 h look-back)" detect --format csv --earliest 2026-11-08T12:00:00Z --latest 2026-11-08T13:00:00Z
bench "detect, 2026-11-08 23:00-24:00 (24 h look-back)" detect --format csv --earliest 2026-11-08T23:00:00Z --latest 2026-11-09T00:00:00Z
bt=() at=()
ingest "$before" > /dev/null
for ((i = 0; i < rounds; i++)); do
    bt+=("$(ingest "$before")")
    cp "$work/counts.$(basename "$before")" "$work/counts.before"
    at+=("$(ingest "$after")")
    cmp -s "$work/counts.before" "$work/counts.$(basename "$after")" || { echo "ingest: the two lakes hold different rows" >&2; exit 1; }
done
report "ingest $(basename "$input") ($(du -h "$input" | cut -f1)), -j 2" "${bt[*]}" "${at[*]}"
