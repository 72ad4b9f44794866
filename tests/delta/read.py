"""Reads one cimlake table with the `deltalake` package (a Delta reader that knows nothing of
cimlake) and prints, as JSON: the Delta version, the row count, the rows whose `date`/`hour`
partition values disagree with their `_time` (null for a table without an `hour` partition), and the chosen columns of every row (timestamps as
microseconds since the epoch, nulls as null).

    python read.py TABLE_DIR|s3://… COLUMN [COLUMN...]
"""
import json
import os
import sys

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

table_dir, columns = sys.argv[1], sys.argv[2:]
# A table in S3 is read with the settings cimlake was given (AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, …).
options = {k: v for k, v in os.environ.items() if k.startswith("AWS_")} if table_dir.startswith("s3://") else None
dt = DeltaTable(table_dir, storage_options=options)
t = dt.to_pyarrow_table()
bad = None
if "hour" in t.column_names:
    # An ingested table: partition values come from the Delta log, `_time` from the Parquet
    # file, and they must agree. (The tables scheduled runs write are partitioned by their run
    # window's date instead.)
    times = t.column("_time")
    want_date = pc.strftime(times, format="%Y-%m-%d")
    want_hour = pc.hour(times)
    got_date = pc.strftime(t.column("date").cast(pa.timestamp("s")), format="%Y-%m-%d")
    got_hour = t.column("hour").cast(pa.int64())
    bad = pc.sum(pc.or_(pc.not_equal(want_date, got_date), pc.not_equal(want_hour, got_hour))).as_py() or 0
cols = []
for c in columns:
    col = t.column(c)
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    cols.append(col.to_pylist())
rows = [list(r) for r in zip(*cols)] if cols else []
print(json.dumps({"version": dt.version(), "count": t.num_rows, "partition_mismatches": bad, "rows": rows}))
sys.stdout.flush()
# The native libraries' threads sometimes abort the interpreter's teardown ("terminate called
# without an active exception") after everything is printed: leave without it.
os._exit(0)
