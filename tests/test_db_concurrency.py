"""Several processes and threads on one database: every row arrives, nobody sees a lock; fork: on each engine.

A ``:memory:`` database is SQLite's alone.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import warnings
from pathlib import Path

import pytest

from taskcatalog.db import DatabaseError, DatabaseLocked, Migration, connect

SCHEMA_SQL = "CREATE TABLE hits (id INTEGER PRIMARY KEY, writer TEXT, n INTEGER)"
SCHEMA = Migration("load", "0001_hits", SCHEMA_SQL)


def schema(engine):
    return engine.migration("load", "0001_hits", SCHEMA_SQL)
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


def test_four_processes_writing_the_same_database_lose_nothing(engine):
    url = engine.url("load")
    with connect(url) as db:
        db.upgrade([schema(engine)])
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WRITERS)
    workers = [
        context.Process(target=write_worker, args=(url, f"w{i}", barrier)) for i in range(WRITERS)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    # A worker that saw "database is locked" (or anything else) exits non-zero
    # with its traceback on stderr.
    assert [w.exitcode for w in workers] == [0] * WRITERS
    counts = dict(engine.query("SELECT writer, count(*) FROM hits GROUP BY writer", name="load"))
    distinct = engine.query("SELECT count(DISTINCT writer || ':' || n) FROM hits", name="load")[0][0]
    assert counts == {f"w{i}": rows_written() for i in range(WRITERS)}
    assert distinct == WRITERS * rows_written()


def rows_written() -> int:
    """How many rows one write_worker inserts (its loop may overshoot ROWS by a bulk)."""
    n = 0
    while n < ROWS:
        kind = n % 30
        n += 1 if kind < 20 else 2 if kind < 25 else 3
    return n


def test_threads_sharing_one_connection_lose_nothing(engine):
    threads, rows = 8, 150
    with engine.connect("threads") as db:
        db.upgrade([schema(engine)])
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
    # SQLite only, as the next test: PostgreSQL has no memory database.
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


def test_a_memory_database_held_by_another_threads_session_is_locked_after_the_timeout(tmp_path):
    with connect(":memory:", timeout=0.2) as db:
        db.upgrade([SCHEMA])
        inside, release = threading.Event(), threading.Event()
        holder_errors = []

        def hold():
            try:
                with db.session():
                    db.create("hits", {"writer": "holder", "n": 0})
                    inside.set()
                    assert release.wait(timeout=60)
            except BaseException as exc:
                holder_errors.append(exc)

        holder = threading.Thread(target=hold)
        holder.start()
        outcomes = []
        try:
            assert inside.wait(timeout=60)
            # Each call runs in a thread of its own, so a call that waits
            # without limit fails the test instead of hanging it.
            for call in (
                lambda: db.read("hits"),
                lambda: db.create("hits", {"writer": "other", "n": 1}),
                lambda: db.session().__enter__(),
                lambda: db.backup(tmp_path / "copy.sqlite3"),
            ):
                outcome = {}

                def attempt(call=call, outcome=outcome):
                    started = time.monotonic()
                    try:
                        call()
                    except Exception as exc:
                        outcome["error"] = exc
                    outcome["waited"] = time.monotonic() - started

                thread = threading.Thread(target=attempt, daemon=True)
                thread.start()
                thread.join(timeout=30)
                assert not thread.is_alive(), "the call waited without limit"
                outcomes.append(outcome)
        finally:
            release.set()
            holder.join(timeout=60)
        assert holder_errors == []
        message = (
            "the database :memory: is locked: another thread's session held it for more than 0.2 s (the threads "
            "of a :memory: connection take turns on its one sqlite3 connection); keep sessions short or raise timeout="
        )
        for outcome in outcomes:
            error = outcome["error"]
            assert type(error) is DatabaseLocked and str(error) == message and error.path == ":memory:"
            assert 0.2 <= outcome["waited"] < 10
        assert not (tmp_path / "copy.sqlite3").exists()  # refused before the copy was touched
        # Once the session is over, the other threads' turn comes.
        assert [r["writer"] for r in db.read("hits")] == ["holder"]
        assert db.create("hits", {"writer": "after", "n": 2}) == 2


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files through /proc")
def test_connections_of_finished_threads_are_closed(engine):
    with engine.connect("short") as db:
        db.upgrade([schema(engine)])

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
        assert open_files() - before <= 3  # at most the last thread's database, WAL and shm (or socket)


def forked_child(db, writer, report):
    """Run in a forked child, with the parent's Connection object inherited.

    Registers a callback (the parent held the callback lock at the fork),
    writes, and reports the id() of the driver connection it wrote with.
    """
    created = []
    db.on("after_create", "hits", lambda event: created.append(event.result))
    for n in range(20):
        db.create("hits", {"writer": writer, "n": n})
    report.send((id(db._threads.state.conn), len(created)))
    db.close()


def fork_quietly(children):
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() while threads run; none of ours do.
        warnings.simplefilter("ignore", DeprecationWarning)
        for child in children:
            child.start()


def test_a_forked_child_opens_its_own_connections_and_locks(engine):
    # On PostgreSQL a child that used, or closed, the parent's socket would
    # break the parent's conversation with the server: the parent's last
    # create below would fail.
    with engine.connect("fork") as db:
        db.upgrade([schema(engine)])
        db.create("hits", {"writer": "parent", "n": 0})
        parent_conn = id(db._threads.state.conn)
        context = multiprocessing.get_context("fork")
        pipes = [context.Pipe(duplex=False) for _ in range(2)]
        children = [
            context.Process(target=forked_child, args=(db, f"child{i}", sender))
            for i, (_, sender) in enumerate(pipes)
        ]
        try:
            # As if another thread were inside on() at the moment of the fork:
            # a child that kept this lock would wait for it forever.
            with db._callbacks._lock:
                fork_quietly(children)
            for child in children:
                child.join(timeout=60)
            assert [c.exitcode for c in children] == [0, 0]
            reports = [receiver.recv() for receiver, _ in pipes]
        finally:
            for child in children:
                if child.is_alive():
                    child.terminate()
                    child.join(timeout=10)
            for receiver, sender in pipes:
                receiver.close()
                sender.close()
        # Each child wrote through a driver connection of its own (the
        # parent's stays referenced in the child, so no new one can reuse its id).
        assert [conn != parent_conn for conn, _ in reports] == [True, True]
        assert [count for _, count in reports] == [20, 20]
        assert id(db._threads.state.conn) == parent_conn
        db.create("hits", {"writer": "parent", "n": 1})  # the parent's connection is untouched
        assert len(db.read("hits")) == 42


def memory_child(db, report):
    """Run in a forked child: try to use the parent's memory database."""
    outcomes = []
    for call in (lambda: db.read("hits"), lambda: db.create("hits", {"writer": "child", "n": 0})):
        try:
            call()
            outcomes.append(("no error", ""))
        except Exception as exc:
            outcomes.append((type(exc).__name__, str(exc)))
    db.close()  # nothing to close: the inherited connection is left alone
    report.send((os.getpid(), outcomes))


def test_a_forked_child_cannot_use_the_parents_memory_database():
    # SQLite only: PostgreSQL has no memory database.
    with connect(":memory:") as db:
        db.upgrade([SCHEMA])
        db.create("hits", {"writer": "parent", "n": 0})
        context = multiprocessing.get_context("fork")
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=memory_child, args=(db, sender))
        try:
            fork_quietly([child])
            child.join(timeout=60)
            assert child.exitcode == 0
            pid, outcomes = receiver.recv()
        finally:
            if child.is_alive():
                child.terminate()
                child.join(timeout=10)
            receiver.close()
            sender.close()
        message = (
            f"the :memory: database of this connection lives in process {os.getpid()}, which opened it; "
            f"this process ({pid}) was forked from it and cannot use it: open a database of its own here"
        )
        assert outcomes == [("DatabaseError", message)] * 2
        assert db.read("hits") == [{"id": 1, "writer": "parent", "n": 0}]  # the parent's is untouched


def test_a_session_open_at_a_fork_is_left_to_the_parent(engine):
    """A child forked inside a session must neither commit nor roll back the
    parent's transaction when it leaves the ``with`` block."""
    with engine.connect("fork-session") as db:
        db.upgrade([schema(engine)])
        read_end, write_end = os.pipe()
        pid = None
        try:
            with db.session():
                db.create("hits", {"writer": "parent", "n": 0})
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    pid = os.fork()
        except DatabaseError as exc:
            if pid == 0:
                os.write(write_end, f"{type(exc).__name__}: {exc}".encode())
                os._exit(0)
            raise
        finally:
            if pid == 0:
                os._exit(3)  # the child never runs the rest of the test
        os.close(write_end)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read_end, "rb") as reader:
            said = reader.read().decode()
        assert os.waitstatus_to_exitcode(status) == 0, said
        assert said == (
            f"DatabaseError: a session on {db.label} ended in a process forked while it was open; "
            f"it belongs to the parent process, which commits or rolls it back"
        )
        assert db.read("hits") == [{"id": 1, "writer": "parent", "n": 0}]  # the parent committed
