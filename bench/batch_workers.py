"""Rows per second of one batch executed by several worker processes at once, beside one worker.

Run from the repository root::

    python bench/batch_workers.py [--url postgresql://...] [--rows 2000] [--wait 0.01] [--workers 4] [--repeat 3]

The claim of a row must not serialise the workers: with rows that each wait
``--wait`` seconds (``time.sleep``, so the workers do not compete for the
two cores of this machine), N workers should finish the batch close to N
times as fast as one. Target (issue 11): 4 workers >= 3.5x one worker on
PostgreSQL, 2,000 rows of 10 ms.

The catalog database is ``--url`` (default: ``$TASKCATALOG_TEST_POSTGRES``,
the server ``bash .ci/postgres.sh`` starts; a database of the benchmark's
own is created there and dropped after) or, with ``--sqlite``, a file in a
temporary folder. Each round, for 1 and for ``--workers`` workers: a new
batch of ``--rows`` rows of ``wait_entrypoint_v1(ctx, n)``; the worker
processes (multiprocessing, spawn) each open their catalog (telemetry on)
and load the batch, then all start together at a barrier; the rate is every
row over the time from the barrier to the last ``execute()`` returning
(``time.monotonic``, one clock for every process on Linux). Checked after
each run: every row ok, each with its own call id (no row ran twice), the
batch executed. Rates are the best and the median of ``--repeat`` rounds.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from taskcatalog import Catalog  # noqa: E402

INTERFACE = '''
import time

def wait_entrypoint_v1(ctx, n: int, wait: float):
    time.sleep(wait)
    return n
'''


def worker(interfaces: str, url: str, batch_id: int, barrier, finished) -> None:
    with Catalog(interfaces, [], database=url) as catalog:
        batch = catalog.batches.get(batch_id)
        barrier.wait()
        batch.execute()
        finished.put(time.monotonic())


def run(interfaces: str, url: str, rows: int, wait: float, workers: int) -> float:
    """Rows per second of one batch of ``rows`` rows executed by ``workers`` processes."""
    with Catalog(interfaces, [], database=url, telemetry=False) as catalog:
        batch = catalog.batches.create("wait", 1, rows=[{"n": n, "wait": wait} for n in range(rows)])
    context = multiprocessing.get_context("spawn")
    barrier, finished = context.Barrier(workers + 1), context.Queue()
    processes = [context.Process(target=worker, args=(interfaces, url, batch.id, barrier, finished)) for _ in range(workers)]
    for process in processes:
        process.start()
    barrier.wait()
    start = time.monotonic()
    ends = [finished.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise SystemExit(f"a worker failed (exit code {process.exitcode})")
    with Catalog(interfaces, [], database=url, telemetry=False) as catalog:
        done = catalog.batches.get(batch.id)
        outcomes = done.rows()
        call_ids = {row.call_id for row in outcomes}
        if done.status != "executed" or any(row.status != "ok" for row in outcomes) or len(call_ids) != rows:
            raise SystemExit(f"batch {batch.id}: not every row ran exactly once ({done.counts()}, {len(call_ids)} call ids)")
    return rows / (max(ends) - start)


def postgres_database(server: str) -> tuple[str, Callable[[], None]]:
    import psycopg

    name = f"tc_bench_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(server, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    head, _, _ = server.partition("?")
    url = head.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return url, drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("TASKCATALOG_TEST_POSTGRES", ""),
                        help="a PostgreSQL server where a database may be created (default: $TASKCATALOG_TEST_POSTGRES)")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--wait", type=float, default=0.01, help="seconds each row waits")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.sqlite and not args.url:
        raise SystemExit("no PostgreSQL server: pass --url postgresql://... or set TASKCATALOG_TEST_POSTGRES "
                         "(bash .ci/postgres.sh python bench/batch_workers.py), or use --sqlite")
    with tempfile.TemporaryDirectory() as folder:
        interfaces = os.path.join(folder, "interfaces")
        os.mkdir(interfaces)
        Path(interfaces, "wait.py").write_text(INTERFACE)
        drop = None
        if args.sqlite:
            url, engine = os.path.join(folder, "catalog.sqlite3"), "SQLite"
        else:
            (url, drop), engine = postgres_database(args.url), "PostgreSQL"
        try:
            rates: dict[int, list[float]] = {1: [], args.workers: []}
            for _ in range(args.repeat):
                for workers in rates:
                    rates[workers].append(run(interfaces, url, args.rows, args.wait, workers))
        finally:
            if drop is not None:
                drop()
    print(f"# {engine}, {args.rows} rows of {args.wait * 1000:g} ms, best and median of {args.repeat}; "
          f"Python {platform.python_version()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(f"{'workers':>8} {'rows/s best':>12} {'median':>10} {'x one, best':>12} {'median':>8}")
    one = rates[1]
    for workers, found in rates.items():
        print(f"{workers:>8} {max(found):>12.0f} {statistics.median(found):>10.0f} "
              f"{max(found) / max(one):>12.2f} {statistics.median(found) / statistics.median(one):>8.2f}")
    print(f"(ideal: {1 / args.wait:.0f} rows/s per worker)")


if __name__ == "__main__":
    main()
