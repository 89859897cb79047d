"""Rows per second of ``batch.execute()`` beside raw sqlite3 doing one small write transaction per row.

Run from the repository root (standard library only)::

    python bench/batches.py [--rows 5000] [--repeat 7] [--executors 2]

A batch row's outcome is committed as the row completes, so durability costs
one commit per row, and the limit is raw ``sqlite3`` doing one small write
transaction per row on a file with the same pragmas (WAL,
``synchronous=NORMAL``, ``foreign_keys=ON``, autocommit connection):

* **raw sqlite3**: a table ``jobs (number INTEGER PRIMARY KEY, args TEXT,
  status TEXT, value TEXT)`` holding ``--rows`` rows; per row ``BEGIN
  IMMEDIATE``, ``SELECT args`` of the row, ``UPDATE`` its status and value,
  ``COMMIT``, on one reused cursor. Nothing else: no JSON, no call, so the
  strict baseline.
* **batch.execute(), telemetry on**: a catalog with ``database=`` a file (the
  default, telemetry persisted by its writer thread into the same file), a
  batch of ``--rows`` rows of a trivial interface
  (``def noop_entrypoint_v1(ctx, x): return x``), created before the clock
  starts; the clock runs while ``execute()`` runs (the catalog's ``close()``,
  which flushes the last telemetry records, is after the clock: its time is
  printed apart). Target: >= 0.7x raw.
* **batch.execute(), telemetry=False**: the same, recording nothing.
* **raw sqlite3, the library's statements**: for scale, no target: raw
  ``sqlite3`` on the catalog's own schema (a catalog database with such a
  batch, made before the clock starts) running what ``execute()`` runs per
  rows, nothing else: claims of ``_MOST_CLAIMED`` rows (``BEGIN IMMEDIATE``,
  ``_NEXT_UNCLAIMED``, the claim's ``INSERT``, ``COMMIT``) and per row the
  outcome ``INSERT`` (``_OUTCOME``) in autocommit, as taskcatalog/batches.py
  does. It separates what the schema and
  statements cost from what the Python around them costs.

Every round makes a new temporary folder and new database files for every
case, so no case finds another's page cache or WAL; cases alternate within
a round, so a slow moment of the machine hits all of them. The collector
stays enabled (a batch run allocates per row, as in real use). Rows/s are
the best and the median of ``--repeat`` rounds; ratios to raw are
best/best and median/median.

Then ``--executors`` processes (multiprocessing, spawn) execute one batch
of ``--rows`` rows at once, each with its own catalog (telemetry on) on the
same file: each makes its catalog and loads the batch, all start together
(a barrier), and the rate is every row over the time from the start until
the last ``execute()`` returned (``time.monotonic``, one clock for every
process on Linux). The same harness with one process is the reference.
Checked after each run: every row has status ok and its own call id (no
row ran twice), and the batch is executed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from taskcatalog import Catalog  # noqa: E402
from taskcatalog.batches import _MOST_CLAIMED, _NEXT_UNCLAIMED, _OUTCOME  # noqa: E402  (what execute() runs)

NOOP = "def noop_entrypoint_v1(ctx, x):\n    return x\n"
SELECT = "SELECT args FROM jobs WHERE number = ?"
UPDATE = "UPDATE jobs SET status = 'ok', value = ? WHERE number = ?"


def interfaces(folder: Path) -> Path:
    path = folder / "interfaces"
    path.mkdir()
    (path / "noop.py").write_text(NOOP)
    return path


def raw_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def raw_round(folder: Path, rows: int) -> float:
    conn = raw_connection(folder / "raw.sqlite3")
    try:
        conn.execute("CREATE TABLE jobs (number INTEGER PRIMARY KEY, args TEXT NOT NULL,"
                     " status TEXT NOT NULL DEFAULT 'pending', value TEXT)")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO jobs (number, args) VALUES (?, ?)",
                         [(n, json.dumps({"x": n})) for n in range(1, rows + 1)])
        conn.execute("COMMIT")
        cur = conn.cursor()
        start = time.perf_counter()
        for number in range(1, rows + 1):
            cur.execute("BEGIN IMMEDIATE")
            args = cur.execute(SELECT, (number,)).fetchone()[0]
            cur.execute(UPDATE, (args, number))
            cur.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()


def statements_round(folder: Path, rows: int) -> float:
    path = folder / "catalog.sqlite3"
    with Catalog(interfaces(folder), [], database=path, telemetry=False) as catalog:
        batch_id = catalog.batches.create("noop", 1, rows=[{"x": n} for n in range(1, rows + 1)]).id
    conn = raw_connection(path)
    try:
        cur = conn.cursor()
        me = "bench 1 prefix"
        start = time.perf_counter()
        done = 0
        while True:
            cur.execute("BEGIN IMMEDIATE")
            claimed = cur.execute(_NEXT_UNCLAIMED, (batch_id, batch_id, _MOST_CLAIMED)).fetchall()
            if claimed:
                cur.execute("INSERT INTO taskcatalog_batch_claims (batch, first, last, claimed_by, claimed_at)"
                            " VALUES (?, ?, ?, ?, ?)", (batch_id, claimed[0][0], claimed[-1][0], me, time.time()))
            cur.execute("COMMIT")
            if not claimed:
                break
            for number, args in claimed:
                cur.execute(_OUTCOME, ((batch_id << 32) + number, batch_id, number, "ok", args, 0, None, None, "call", 0.0,
                                       time.time()))
                done += 1
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    assert done == rows, done
    return elapsed


def library_round(folder: Path, rows: int, telemetry: bool) -> tuple[float, float]:
    """(seconds in execute(), seconds in close() after it)."""
    catalog = Catalog(interfaces(folder), [], database=folder / "catalog.sqlite3", telemetry=telemetry)
    try:
        batch = catalog.batches.create("noop", 1, rows=[{"x": n} for n in range(1, rows + 1)])
        start = time.perf_counter()
        counts = batch.execute()
        elapsed = time.perf_counter() - start
    finally:
        closing = time.perf_counter()
        catalog.close()
        closed = time.perf_counter() - closing
    assert counts["ok"] == rows, counts
    return elapsed, closed


def executor(folder: str, batch_id: int, barrier, results) -> None:
    """Run in a spawned process: wait for the others, execute the batch, report (start, end, rows run)."""
    catalog = Catalog(Path(folder) / "interfaces", [], database=Path(folder) / "catalog.sqlite3")
    try:
        batch = catalog.batches.get(batch_id)
        ran = 0

        def count(step) -> None:
            nonlocal ran
            ran = step.ran

        barrier.wait(timeout=120)
        start = time.monotonic()
        batch.execute(progress=count)
        results.put((start, time.monotonic(), ran))
    finally:
        catalog.close()


def executors_round(folder: Path, rows: int, processes: int) -> tuple[float, list[int]]:
    """(seconds from the common start until the last execute() returned, rows each process ran)."""
    path = interfaces(folder)
    with Catalog(path, [], database=folder / "catalog.sqlite3") as catalog:
        batch_id = catalog.batches.create("noop", 1, rows=[{"x": n} for n in range(1, rows + 1)]).id
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=executor, args=(str(folder), batch_id, barrier, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * processes, [w.exitcode for w in workers]
    with Catalog(path, [], database=folder / "catalog.sqlite3", telemetry=False) as catalog:
        batch = catalog.batches.get(batch_id)
        done = batch.rows()
        assert batch.status == "executed" and all(r.status == "ok" for r in done) and len(done) == rows
        assert len({r.call_id for r in done}) == rows  # one call per row: none ran twice
    start = min(r[0] for r in reports)
    end = max(r[1] for r in reports)
    return end - start, sorted((r[2] for r in reports), reverse=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000, help="rows per batch (default 5000)")
    parser.add_argument("--repeat", type=int, default=7, help="rounds per case (default 7)")
    parser.add_argument("--executors", type=int, default=2, help="processes executing one batch (default 2)")
    parser.add_argument("--target", type=float, default=0.7, help="least ratio to raw (default 0.7)")
    options = parser.parse_args(argv)
    rows = options.rows

    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"raw": [], "on": [], "off": [], "sql": []}
    closes: list[float] = []
    cases = list(times)
    for round_number in range(options.repeat):
        turn = round_number % len(cases)
        order = cases[turn:] + cases[:turn]  # who goes first rotates
        for case in order:
            with tempfile.TemporaryDirectory(prefix="taskcatalog-bench-batches-") as name:
                folder = Path(name)
                if case == "raw":
                    times["raw"].append(raw_round(folder, rows))
                elif case == "sql":
                    times["sql"].append(statements_round(folder, rows))
                else:
                    elapsed, closed = library_round(folder, rows, telemetry=case == "on")
                    times[case].append(elapsed)
                    if case == "on":
                        closes.append(closed)
    multi: dict[int, list[float]] = {1: [], options.executors: []}
    splits: list[list[int]] = []
    for _ in range(options.repeat):
        for processes in multi:
            with tempfile.TemporaryDirectory(prefix="taskcatalog-bench-batches-") as name:
                elapsed, split = executors_round(Path(name), rows, processes)
                multi[processes].append(elapsed)
                if processes == options.executors:
                    splits.append(split)
    load_after = os.getloadavg()

    print(f"Python {platform.python_version()} ({sys.executable}) on {platform.machine()}, "
          f"{os.cpu_count()} CPUs, {platform.platform()}")
    print(f"SQLite {sqlite3.sqlite_version}")
    print(f"load average {' '.join(f'{x:.2f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.2f}' for x in load_after)} after")
    print(f"{rows:,} rows per batch, {options.repeat} rounds per case; rows/s: best and median round; "
          f"ratios to raw: best/best and median/median")
    print()
    header = f"{'case':<44}{'best rows/s':>13}{'median':>10}{'x raw':>8}{'x raw med':>11}{'target':>8}  met"
    print(header)
    print("-" * len(header))
    raw_best, raw_median = rows / min(times["raw"]), rows / statistics.median(times["raw"])
    labels = {"raw": "raw sqlite3, 1 transaction per row",
              "on": "batch.execute(), telemetry on (default)",
              "off": "batch.execute(), telemetry=False",
              "sql": "raw sqlite3, the library's statements"}
    for case in cases:
        best, median = rows / min(times[case]), rows / statistics.median(times[case])
        ratio, ratio_median = best / raw_best, median / raw_median
        if case in ("raw", "sql"):
            print(f"{labels[case]:<44}{best:>13,.0f}{median:>10,.0f}{ratio:>8.2f}{ratio_median:>11.2f}")
            continue
        met = "yes" if ratio_median >= options.target else "best" if ratio >= options.target else "NO"
        print(f"{labels[case]:<44}{best:>13,.0f}{median:>10,.0f}{ratio:>8.2f}{ratio_median:>11.2f}"
              f"{options.target:>8.2f}  {met}")
    for processes, elapsed in multi.items():
        best, median = rows / min(elapsed), rows / statistics.median(elapsed)
        label = f"{processes} executor process{'es' if processes > 1 else ''} on one batch (total)"
        print(f"{label:<44}{best:>13,.0f}{median:>10,.0f}{best / raw_best:>8.2f}{median / raw_median:>11.2f}")
    print()
    print(f"telemetry on: close() after execute() took {min(closes) * 1000:.0f} ms best, "
          f"{statistics.median(closes) * 1000:.0f} ms median (not in the figures above)")
    print(f"rows run by each of the {options.executors} executors, per round: "
          f"{', '.join('/'.join(map(str, split)) for split in splits)}")
    print("met: yes = on the best and the median rounds; best = on the best rounds only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
