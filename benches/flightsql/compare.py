"""What fetching through `cimlake serve` costs, against reading the same data without it.

    python compare.py URL TOKEN LAKE CIMLAKE [ROUNDS]

For each statement, one warm-up run of each side, then ROUNDS rounds alternating which side goes
first; prints the median wall time of each and the ratio. Both sides must give the same rows.

* Bulk reads: the ADBC Flight SQL driver fetching columns of network_traffic.all_traffic from the
  server, against pyarrow reading the same columns straight from the lake's Parquet files (what a
  notebook without the server would do).
* The detection: its results over Flight SQL from the running server, against a `cimlake query`
  process (start-up, the lake's commit log, planning, the query).
"""

import statistics
import subprocess
import sys
import time

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow.compute as pc
import pyarrow.dataset as ds
from adbc_driver_flightsql import DatabaseOptions

url, token, lake, cimlake = sys.argv[1:5]
rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 5
conn = flightsql.connect(url, autocommit=True, db_kwargs={DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"})
flows = ds.dataset(f"{lake}/network_traffic/all_traffic", format="parquet")
columns = ["_time", "dest_ip", "dest_port", "bytes_out", "process_id"]
detection = "SELECT * FROM detect.windows_http_network_communication_from_msiexec"


def flight(sql):
    cur = conn.cursor()
    cur.execute(sql)
    table = cur.fetch_arrow_table()
    cur.close()
    return table.num_rows, table.nbytes


def local_scan(filter=None):
    table = flows.to_table(columns=columns, filter=filter)
    return table.num_rows, table.nbytes


def cli(sql):
    out = subprocess.run([cimlake, "--lake", lake, "query", sql, "--format", "json"], check=True, capture_output=True).stdout
    return out.count(b"\n"), len(out)


statements = [
    ("all flows, 5 columns", lambda: flight(f"SELECT {', '.join(columns)} FROM network_traffic.all_traffic"), lambda: local_scan()),
    ("flows to 443, 5 columns", lambda: flight(f"SELECT {', '.join(columns)} FROM network_traffic.all_traffic WHERE dest_port = 443"),
     lambda: local_scan(pc.field("dest_port") == 443)),
    ("MSIExec detection", lambda: flight(detection), lambda: cli(detection)),
]


def timed(f):
    t0 = time.perf_counter()
    result = f()
    return time.perf_counter() - t0, result


print(f"{'statement':<26} {'rows':>10} {'served (s)':>11} {'baseline (s)':>13} {'ratio':>7}")
for name, served, baseline in statements:
    (_, (rows, _)), (_, (base_rows, _)) = timed(served), timed(baseline)
    assert rows == base_rows, f"{name}: {rows} rows served, {base_rows} rows in the baseline"
    times = {"served": [], "baseline": []}
    for r in range(rounds):
        order = [("served", served), ("baseline", baseline)]
        for side, f in order if r % 2 == 0 else reversed(order):
            times[side].append(timed(f)[0])
    s, b = statistics.median(times["served"]), statistics.median(times["baseline"])
    print(f"{name:<26} {rows:>10} {s:>11.3f} {b:>13.3f} {s / b:>6.2f}x", flush=True)
