#!/usr/bin/env bash
# EVTX → lake (`cimlake ingest -j 1`, Parquet written and committed) against
# `evtx_dump -t 1 -o jsonl` (the parser under Chainsaw and Hayabusa; `cargo install evtx`) on the
# same file, one thread each, alternating, N rounds. Prints the total wall time of each.
#
#   bash benches/evtx_dump/compare.sh FILE.evtx [ROUNDS] [CIMLAKE] [EVTX_DUMP]
set -euo pipefail
file=$1
rounds=${2:-50}
cimlake=${3:-target/release/cimlake}
evtx_dump=${4:-evtx_dump}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
c_total=0
e_total=0
for ((i = 0; i < rounds; i++)); do
    rm -rf "$work/lake"
    t0=$(now)
    "$cimlake" --lake "$work/lake" ingest -j 1 "$file" > /dev/null
    t1=$(now)
    "$evtx_dump" -t 1 -o jsonl "$file" > "$work/out.jsonl"
    t2=$(now)
    c_total=$(echo "$c_total + $t1 - $t0" | bc -l)
    e_total=$(echo "$e_total + $t2 - $t1" | bc -l)
done
records=$(wc -l < "$work/out.jsonl")
printf '%s: %d rounds, %d records per round\n' "$file" "$rounds" "$records"
printf 'cimlake ingest -j 1:          %.3f s\n' "$c_total"
printf 'evtx_dump -t 1 -o jsonl:      %.3f s\n' "$e_total"
printf 'cimlake / evtx_dump:          %.2fx\n' "$(echo "$c_total / $e_total" | bc -l)"
