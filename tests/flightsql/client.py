"""A Flight SQL client for the integration tests, on the ADBC Flight SQL driver (the Go driver
that Python, R and DuckDB users connect with).

    client.py URL [--token T | --user U --password P] [--tls-root FILE] ACTION ARGS...

Actions:
    query SQL OUT              run SQL, write the result to OUT (Arrow IPC file)
    prepared SQL PARAMS OUT    run SQL with ? parameters, PARAMS a JSON list, write OUT
    objects OUT                the catalog (adbc_get_objects, every level) as JSON
    table-schema SCHEMA TABLE  print one table's columns and Arrow types as JSON
    info                       print the server's name and version as JSON
    partial SQL                read the first batch of SQL, then exit without closing anything
    stall SQL SECONDS          read the first batch of SQL, then wait SECONDS without reading
    load CLIENTS QUERIES       CLIENTS connections at once, each running QUERIES statements (the
                               detection view and two aggregates in turn); print a JSON report

A driver error is printed on stderr as `error: …`, with exit status 2.
"""

import argparse
import json
import os
import sys
import threading
import time

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
from adbc_driver_flightsql import DatabaseOptions


def connect(args):
    options = {}
    if args.token:
        options[DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {args.token}"
    if args.user:
        options["username"] = args.user
        options["password"] = args.password
    if args.tls_root:
        with open(args.tls_root) as f:
            options[DatabaseOptions.TLS_ROOT_CERTS.value] = f.read()
    return flightsql.connect(args.url, db_kwargs=options, autocommit=True)


def write(table, path):
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as out:
        out.write_table(table)


LOAD_QUERIES = [
    "SELECT * FROM detect.windows_http_network_communication_from_msiexec",
    "SELECT dest, count(*) AS n FROM endpoint.processes GROUP BY dest",
    "SELECT count(*) AS n FROM network_traffic.all_traffic WHERE dest_port IN (80, 443)",
]


def load(args, clients, per):
    """Runs `per` statements on each of `clients` connections at once; every answer's row count
    and every failure is reported."""
    lock = threading.Lock()
    report = {"total": 0, "failed": 0, "errors": [], "rows": {q: [] for q in LOAD_QUERIES}, "seconds": []}

    def one(i):
        conn = connect(args)
        for j in range(per):
            sql = LOAD_QUERIES[(i + j) % len(LOAD_QUERIES)]
            started = time.time()
            try:
                cur = conn.cursor()
                cur.execute(sql)
                rows = cur.fetch_arrow_table().num_rows
                cur.close()
                error = None
            except flightsql.Error as e:
                rows, error = None, str(e)
            with lock:
                report["total"] += 1
                report["seconds"].append(round(time.time() - started, 3))
                if error is None:
                    report["rows"][sql].append(rows)
                else:
                    report["failed"] += 1
                    report["errors"].append(error[:500])
        conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--token")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--tls-root")
    parser.add_argument("action")
    parser.add_argument("rest", nargs="*")
    args = parser.parse_args()

    try:
        conn = connect(args)
        cur = conn.cursor()
        if args.action == "query":
            sql, out = args.rest
            cur.execute(sql)
            write(cur.fetch_arrow_table(), out)
        elif args.action == "prepared":
            sql, params, out = args.rest
            cur.execute(sql, parameters=json.loads(params))
            write(cur.fetch_arrow_table(), out)
        elif args.action == "objects":
            (out,) = args.rest
            catalog = {}
            for c in conn.adbc_get_objects(depth="all").read_all().to_pylist():
                schemas = catalog.setdefault(c["catalog_name"], {})
                for s in c["catalog_db_schemas"] or []:
                    tables = schemas.setdefault(s["db_schema_name"], {})
                    for t in s["db_schema_tables"] or []:
                        tables[t["table_name"]] = {
                            "type": t["table_type"],
                            "columns": [col["column_name"] for col in sorted(t["table_columns"], key=lambda c: c["ordinal_position"])],
                        }
            with open(out, "w") as f:
                json.dump(catalog, f, indent=1, sort_keys=True)
        elif args.action == "table-schema":
            schema, table = args.rest
            s = conn.adbc_get_table_schema(table, db_schema_filter=schema)
            print(json.dumps([[f.name, str(f.type)] for f in s]))
        elif args.action == "info":
            info = conn.adbc_get_info()
            print(json.dumps({k: info[k] for k in ("vendor_name", "vendor_version")}))
        elif args.action == "partial":
            (sql,) = args.rest
            cur.execute(sql)
            batch = cur.fetch_record_batch().read_next_batch()
            print(f"read {batch.num_rows} rows", flush=True)
            # Gone without a word, as a crashed notebook kernel would be.
            os._exit(0)
        elif args.action == "stall":
            sql, seconds = args.rest
            cur.execute(sql)
            reader = cur.fetch_record_batch()
            batch = reader.read_next_batch()
            print(f"read {batch.num_rows} rows", flush=True)
            time.sleep(float(seconds))
            # The connection stays open until here; whatever the server did meanwhile, it did with
            # a live client that was not reading.
            os._exit(0)
        elif args.action == "load":
            clients, per = (int(x) for x in args.rest)
            print(json.dumps(load(args, clients, per)))
        else:
            parser.error(f"unknown action {args.action}")
        cur.close()
        conn.close()
    except flightsql.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
