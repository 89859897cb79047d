"""Rows per second of taskcatalog.db beside raw sqlite3 doing the same work.

    python bench/db.py [--rows N] [--repeat R]

One process, one database file in a temporary folder, the same table and
pragmas (WAL, synchronous=NORMAL, foreign_keys=ON, autocommit connection
with explicit BEGIN IMMEDIATE ... COMMIT) for both sides. Each measurement
runs R times, the library and raw sqlite3 alternating so drift hits both;
before each write run a third connection empties the table, so neither
measured connection has a warm page cache the other lacks.
Rows per second are from the best run (the least disturbed by whatever else
the machine does); ratios are given on the best runs and on the medians.

Raw sqlite3 is measured two ways: with named parameters bound straight
from the same dicts the library receives ("raw, dict"), and with positional
tuples prepared before the clock starts ("raw, tuple"), which is less work
than the library does and so the harder baseline. Raw single inserts reuse
one cursor (cursor.execute), as the library does, rather than paying for a
new cursor per row through Connection.execute.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from taskcatalog.db import Migration, connect  # noqa: E402

SCHEMA = "CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT, qty INTEGER, note TEXT)"
INSERT_NAMED = "INSERT INTO orders (sku, qty, note) VALUES (:sku, :qty, :note)"
INSERT_QMARK = "INSERT INTO orders (sku, qty, note) VALUES (?, ?, ?)"


def make_rows(n: int) -> list[dict]:
    return [{"sku": f"SKU-{i:06d}", "qty": i % 17, "note": "x" * (i % 40)} for i in range(n)]


def timed(fn) -> float:
    gc.collect()
    gc.disable()  # both sides allocate; keep collector pauses out of the comparison
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        gc.enable()


def raw_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows per measurement (default 50000)")
    parser.add_argument("--repeat", type=int, default=7, help="runs per measurement (default 7)")
    args = parser.parse_args(argv)
    rows = make_rows(args.rows)
    tuples = [(r["sku"], r["qty"], r["note"]) for r in rows]

    with tempfile.TemporaryDirectory(prefix="taskcatalog-bench-") as folder:
        path = Path(folder) / "bench.sqlite3"
        db = connect(path)
        raw = raw_connection(path)
        cleaner = raw_connection(path)
        try:
            db.upgrade([Migration("bench", "0001_orders", SCHEMA)])

            # A connection of its own empties the table, so both measured
            # connections find their page cache stale and start equally cold.
            # (Cleared through `raw`, raw's cache stayed warm: identical work
            # ran up to 6% slower on the other connection.)
            def clear():
                cleaner.execute("DELETE FROM orders")
                cleaner.execute("PRAGMA wal_checkpoint(TRUNCATE)")

            def lib_create():
                with db.session():
                    for row in rows:
                        db.create("orders", row)

            # One cursor reused for every row, as the library does:
            # Connection.execute would build a new cursor per row.
            def raw_create_dict():
                cur = raw.cursor()
                cur.execute("BEGIN IMMEDIATE")
                for row in rows:
                    cur.execute(INSERT_NAMED, row).lastrowid
                cur.execute("COMMIT")

            def raw_create_tuple():
                cur = raw.cursor()
                cur.execute("BEGIN IMMEDIATE")
                for values in tuples:
                    cur.execute(INSERT_QMARK, values).lastrowid
                cur.execute("COMMIT")

            def lib_many():
                with db.session():
                    db.create_many("orders", rows)

            def raw_many_dict():
                raw.execute("BEGIN IMMEDIATE")
                raw.executemany(INSERT_NAMED, rows)
                raw.execute("COMMIT")

            def raw_many_tuple():
                raw.execute("BEGIN IMMEDIATE")
                raw.executemany(INSERT_QMARK, tuples)
                raw.execute("COMMIT")

            def lib_read():
                assert len(db.read("orders")) == args.rows

            def raw_read_dict():
                cur = raw.execute("SELECT * FROM orders")
                names = [d[0] for d in cur.description]
                assert len([dict(zip(names, r)) for r in cur.fetchall()]) == args.rows

            def raw_read_tuple():
                assert len(raw.execute("SELECT * FROM orders").fetchall()) == args.rows

            writes = {
                "create in a session": (lib_create, raw_create_dict, raw_create_tuple),
                "create_many": (lib_many, raw_many_dict, raw_many_tuple),
            }
            results = {}
            for name, variants in writes.items():
                times = [[], [], []]
                for _ in range(args.repeat):
                    for i, fn in enumerate(variants):
                        clear()
                        times[i].append(timed(fn))
                results[name] = times
            clear()
            lib_many()
            times = [[], [], []]
            for _ in range(args.repeat):
                for i, fn in enumerate((lib_read, raw_read_dict, raw_read_tuple)):
                    times[i].append(timed(fn))
            results["read (all rows)"] = times
        finally:
            cleaner.close()
            raw.close()
            db.close()

    n = args.rows
    print(f"taskcatalog.db vs raw sqlite3 {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, "
          f"{n} rows, {args.repeat} runs each")
    print("rows/s: best run; ratios: taskcatalog.db / raw, on the best runs and on the medians")
    header = (f"{'operation':<22}{'taskcatalog.db':>16}{'raw, dict':>12}{'raw, tuple':>12}"
              f"{'best/dict':>11}{'best/tuple':>11}{'med/dict':>10}{'med/tuple':>11}")
    print(header)
    print("-" * len(header))
    for name, (lib, rdict, rtuple) in results.items():
        best = [n / min(t) for t in (lib, rdict, rtuple)]
        med = [n / statistics.median(t) for t in (lib, rdict, rtuple)]
        print(f"{name:<22}{best[0]:>16,.0f}{best[1]:>12,.0f}{best[2]:>12,.0f}"
              f"{best[0] / best[1]:>10.2f}x{best[0] / best[2]:>10.2f}x"
              f"{med[0] / med[1]:>9.2f}x{med[0] / med[2]:>10.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
