#!/usr/bin/env python3
"""The MSIExec detection (cimlake mode) on cimlake and on DuckDB, over the same Parquet files.

The DuckDB query is cimlake's own `sql/detections/.../cimlake.sql` with its macros expanded,
its parameters bound to the same window, and the two lake tables read with `read_parquet` over
the lake's files. Both engines run on every core, alternating, `--reps` times each; each run
is checked to return the same rows as the other engine.

cimlake is timed as a whole process (`cimlake detect`, start-up, reading the commit log and
planning included); DuckDB is timed inside this process from a fresh connection (Python
start-up and the import excluded), which favours DuckDB. With `--duckdb-cli PATH` (the `duckdb`
shell, e.g. from PyPI's `duckdb-cli`) DuckDB is also timed as a whole process, as cimlake is:
`duckdb -csv -c SQL`, start-up included.

    python3 benches/duckdb/compare.py --lake LAKE --cimlake target/release/cimlake \
        --window all --window 2026-11-08T12:00:00Z/2026-11-08T13:00:00Z
"""

import argparse
import csv
import io
import pathlib
import re
import statistics
import subprocess
import time
from datetime import datetime, timedelta, timezone

import duckdb

REPO = pathlib.Path(__file__).resolve().parents[2]
DETECTION = "windows_http_network_communication_from_msiexec"
LOOKBACK = timedelta(hours=24)
COLUMNS = ["dest", "process_id", "process_guid", "dest_ip", "dest_port", "count"]


def strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] if not line.lstrip().startswith("--") else "" for line in sql.splitlines())


def duckdb_sql(lake: pathlib.Path, earliest: datetime | None, latest: datetime | None) -> str:
    sql = (REPO / "sql/detections" / DETECTION / "cimlake.sql").read_text()
    sql = strip_comments(sql)
    for macro in (REPO / "sql/macros").glob("*.sql"):
        body = strip_comments(macro.read_text()).strip()
        sql = sql.replace(f"`{macro.stem}`", body)
    # cimlake binds an open window end to the limits of the timestamp type.
    lo = earliest or datetime(1, 1, 1, tzinfo=timezone.utc)
    hi = latest or datetime(9999, 12, 31, tzinfo=timezone.utc)
    ts = lambda t: f"TIMESTAMPTZ '{t.isoformat()}'"
    sql = sql.replace("$process_earliest", ts(lo - LOOKBACK if earliest else lo)).replace("$earliest", ts(lo)).replace("$latest", ts(hi))
    sql = sql.replace("endpoint.processes", f"read_parquet('{lake}/endpoint/processes/**/*.parquet', hive_partitioning = false)")
    sql = sql.replace(
        "network_traffic.all_traffic", f"read_parquet('{lake}/network_traffic/all_traffic/**/*.parquet', hive_partitioning = false)"
    )
    # `user` is a keyword in DuckDB.
    sql = re.sub(r"(?<![\w.\"])user(?![\w\"])", '"user"', sql)
    assert "`" not in sql and "$" not in sql, sql
    return sql


def key_rows(rows):
    return sorted(tuple("" if v is None else str(v) for v in r) for r in rows)


def run_duckdb(sql: str):
    con = duckdb.connect()
    t = time.perf_counter()
    rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM ({sql})").fetchall()
    elapsed = time.perf_counter() - t
    con.close()
    return elapsed, key_rows(rows)


def run_duckdb_cli(cli: str, sql: str):
    t = time.perf_counter()
    out = subprocess.run([cli, "-csv", "-c", f"SELECT {', '.join(COLUMNS)} FROM ({sql})"], check=True, capture_output=True, text=True).stdout
    elapsed = time.perf_counter() - t
    rows = list(csv.DictReader(io.StringIO(out)))
    return elapsed, key_rows([[r[c] if r[c] != "" else None for c in COLUMNS] for r in rows])


def run_cimlake(binary: str, lake: pathlib.Path, earliest, latest):
    args = [binary, "--lake", str(lake), "detect", "--detection", DETECTION, "--format", "csv", "--lookback", "24h"]
    if earliest:
        args += ["--earliest", earliest.isoformat()]
    if latest:
        args += ["--latest", latest.isoformat()]
    t = time.perf_counter()
    out = subprocess.run(args, check=True, capture_output=True, text=True, cwd=REPO).stdout
    elapsed = time.perf_counter() - t
    rows = list(csv.DictReader(io.StringIO(out)))
    return elapsed, key_rows([[r[c] if r[c] != "" else None for c in COLUMNS] for r in rows])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", type=pathlib.Path, required=True)
    ap.add_argument("--cimlake", default=str(REPO / "target/release/cimlake"))
    ap.add_argument("--window", action="append", default=[], help="'all' or EARLIEST/LATEST (RFC 3339)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duckdb-cli", help="the duckdb shell: time DuckDB as a whole process too")
    a = ap.parse_args()
    threads = duckdb.connect().execute("SELECT current_setting('threads')").fetchall()[0][0]
    print(f"duckdb {duckdb.__version__}, threads {threads}")
    if a.duckdb_cli:
        version = subprocess.run([a.duckdb_cli, "--version"], check=True, capture_output=True, text=True).stdout.strip()
        print(f"duckdb shell {version}")
    for w in a.window or ["all"]:
        earliest = latest = None
        if w != "all":
            lo, hi = w.split("/")
            earliest, latest = datetime.fromisoformat(lo), datetime.fromisoformat(hi)
        sql = duckdb_sql(a.lake.resolve(), earliest, latest)
        c_times, d_times, s_times = [], [], []
        for _ in range(a.reps):
            ct, c_rows = run_cimlake(a.cimlake, a.lake, earliest, latest)
            dt, d_rows = run_duckdb(sql)
            if c_rows != d_rows:
                raise SystemExit(f"window {w}: cimlake returned {len(c_rows)} rows, DuckDB {len(d_rows)}; they differ")
            c_times.append(ct)
            d_times.append(dt)
            if a.duckdb_cli:
                st, s_rows = run_duckdb_cli(a.duckdb_cli, sql)
                if s_rows != c_rows:
                    raise SystemExit(f"window {w}: cimlake returned {len(c_rows)} rows, the duckdb shell {len(s_rows)}; they differ")
                s_times.append(st)
        c, d = statistics.median(c_times), statistics.median(d_times)
        print(f"window {w}: {len(c_rows)} rows from both; median of {a.reps}: cimlake {c*1000:.0f} ms, DuckDB {d*1000:.0f} ms, cimlake/DuckDB {c/d:.2f}x")
        if s_times:
            s = statistics.median(s_times)
            print(f"window {w}: whole processes, median of {a.reps}: cimlake {c*1000:.0f} ms, duckdb shell {s*1000:.0f} ms, cimlake/duckdb shell {c/s:.2f}x")


if __name__ == "__main__":
    main()
