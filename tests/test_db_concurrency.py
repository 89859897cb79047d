"""Several processes and threads on one database file: every row arrives, nobody sees a lock."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from taskcatalog.db import Migration, connect

SCHEMA = Migration("load", "0001_hits", "CREATE TABLE hits (id INTEGER PRIMARY KEY, writer TEXT, n INTEGER)")
WRITERS = 4
ROWS = 300  # per writer


def write_worker(path: str, writer: str, barrier) -> None:
    """Run in a spawned process: a mix of lone writes, sessions, bulk inserts and reads."""
    with connect(path) as db:
        barrier.wait(timeout=60)
        n = 0
        while n < ROWS:
            kind = n % 30
            if kind < 20:  # a write outside a session: its own IMMEDIATE transaction
                db.create("hits", {"writer": writer, "n": n})
                n += 1
            elif kind < 25:  # a short session; a read inside it
                with db.session():
                    db.create("hits", {"writer": writer, "n": n})
                    db.create("hits", {"writer": writer, "n": n + 1})
                    db.read("hits", where={"writer": writer}, limit=1)
                n += 2
            else:  # a bulk insert and an update of own rows
                db.create_many("hits", [{"writer": writer, "n": n + i} for i in range(3)])
                db.update("hits", {"writer": writer, "n": n}, {"n": n})
                n += 3
            db.read("hits", where={"n": ("<", 5)}, limit=5)  # reads need no transaction


def test_four_processes_writing_the_same_file_lose_nothing(tmp_path):
    path = tmp_path / "load.sqlite3"
    with connect(path) as db:
        db.upgrade([SCHEMA])
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WRITERS)
    workers = [
        context.Process(target=write_worker, args=(str(path), f"w{i}", barrier)) for i in range(WRITERS)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    # A worker that saw "database is locked" (or anything else) exits non-zero
    # with its traceback on stderr.
    assert [w.exitcode for w in workers] == [0] * WRITERS
    with closing(sqlite3.connect(path)) as raw:
        counts = dict(raw.execute("SELECT writer, count(*) FROM hits GROUP BY writer"))
        distinct = raw.execute("SELECT count(DISTINCT writer || ':' || n) FROM hits").fetchone()[0]
    assert counts == {f"w{i}": rows_written() for i in range(WRITERS)}
    assert distinct == WRITERS * rows_written()


def rows_written() -> int:
    """How many rows one write_worker inserts (its loop may overshoot ROWS by a bulk)."""
    n = 0
    while n < ROWS:
        kind = n % 30
        n += 1 if kind < 20 else 2 if kind < 25 else 3
    return n


def test_threads_sharing_one_connection_lose_nothing(tmp_path):
    threads, rows = 8, 150
    with connect(tmp_path / "threads.sqlite3") as db:
        db.upgrade([SCHEMA])
        barrier = threading.Barrier(threads)
        errors = []

        def work(name):
            try:
                barrier.wait(timeout=30)
                for n in range(0, rows, 3):
                    db.create("hits", {"writer": name, "n": n})
                    with db.session():
                        db.create("hits", {"writer": name, "n": n + 1})
                        db.create_many("hits", [{"writer": name, "n": n + 2}])
                    assert db.read("hits", where={"writer": name, "n": n + 2})[0]["n"] == n + 2
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        pool = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        assert errors == []
        assert len(db.read("hits")) == threads * rows
        for i in range(threads):
            assert sorted(r["n"] for r in db.read("hits", where={"writer": f"t{i}"})) == list(range(rows))


def test_a_memory_database_is_shared_by_the_threads_of_a_connection():
    with connect(":memory:") as db:
        db.upgrade([SCHEMA])
        barrier = threading.Barrier(4)
        errors = []

        def work(name):
            try:
                barrier.wait(timeout=30)
                for n in range(50):
                    if n % 2:
                        db.create("hits", {"writer": name, "n": n})
                    else:
                        with db.session():
                            db.create("hits", {"writer": name, "n": n})
                            db.read("hits", limit=1)
            except BaseException as exc:
                errors.append(exc)

        pool = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        assert errors == []
        assert len(db.read("hits")) == 200


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files through /proc")
def test_connections_of_finished_threads_are_closed(tmp_path):
    with connect(tmp_path / "short.sqlite3") as db:
        db.upgrade([SCHEMA])

        def one_read():
            db.read("hits")

        def open_files():
            return len(os.listdir("/proc/self/fd"))

        for _ in range(3):  # warm up: the first threads open files once
            thread = threading.Thread(target=one_read)
            thread.start()
            thread.join()
        before = open_files()
        for _ in range(40):
            thread = threading.Thread(target=one_read)
            thread.start()
            thread.join()
        assert open_files() - before <= 3  # at most the last thread's database, WAL and shm


def forked_child(db, writer):
    """Run in a forked child, with the parent's Connection object inherited."""
    for n in range(20):
        db.create("hits", {"writer": writer, "n": n})
    db.close()


def test_a_forked_child_opens_its_own_connections(tmp_path):
    import warnings

    with connect(tmp_path / "fork.sqlite3") as db:
        db.upgrade([SCHEMA])
        db.create("hits", {"writer": "parent", "n": 0})
        context = multiprocessing.get_context("fork")
        children = [context.Process(target=forked_child, args=(db, f"child{i}")) for i in range(2)]
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork() while threads run; none of ours do.
            warnings.simplefilter("ignore", DeprecationWarning)
            for child in children:
                child.start()
        for child in children:
            child.join(timeout=60)
        assert [c.exitcode for c in children] == [0, 0]
        db.create("hits", {"writer": "parent", "n": 1})  # the parent's connection is untouched
        assert len(db.read("hits")) == 42
