"""Batches (DESIGN 2.11, 2.14): rows checked when added, executed once through ``catalog.run``,
resumable after a kill, shared by several executors, frozen in Python and in the database.

The catalog database of a test is on the ``engine`` it runs with (tests/db_engines.py): every
test taking ``catalog`` (or ``engine``) runs once on SQLite and once on PostgreSQL, from the
same code. SQLite's executors claim ranges of rows (``taskcatalog_batch_claims``), PostgreSQL's
lock one row at a time (``FOR UPDATE SKIP LOCKED``): what the tests check is the contract both
give. The few tests of one engine only say why."""

from __future__ import annotations

import datetime as dt
import getpass
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, Layout
from db_engines import Engine
from taskcatalog import (
    ArgumentError,
    BatchFrozen,
    BatchNotFound,
    Catalog,
    CatalogError,
    InterfaceNotFound,
    LoadError,
    VersionNotFound,
    VersionRetired,
)
from taskcatalog.batches import BatchProgress, BatchRow

CALC = """
    import math

    class Point:
        def __init__(self, x):
            self.x = x

        def __repr__(self):
            return f"Point({self.x})"

    INTERRUPTED = set()

    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no str for you")

    def calc_entrypoint_v1(ctx, n: int, mode: str = "double"):
        if mode == "double":
            return n * 2
        if mode == "raise":
            raise ValueError(f"n={n} exploded")
        if mode == "set":
            return {n}
        if mode == "nan":
            return math.nan
        if mode == "object":
            return Point(n)
        if mode == "none":
            return None
        if mode == "tuple":
            return (n, "a")
        if mode == "context":
            return {"batch": ctx["batch"], "customer": ctx.customer, "interface": ctx.interface}
        if mode == "unprintable":
            raise Unprintable()
        if mode == "interrupt" and n not in INTERRUPTED:  # Ctrl-C, the first time only
            INTERRUPTED.add(n)
            raise KeyboardInterrupt
        if mode == "interrupt":
            return n
        raise AssertionError(mode)
"""

EVEN = """
    from taskcatalog import BaseTask

    class OnlyEven(BaseTask):
        def is_actionable(self, ctx, n, **kwargs):
            return n % 2 == 0

        def execute(self, ctx, n):
            return n

    even_entrypoint_v1 = OnlyEven
"""

# Appends "<pid> <n>" to LOG (O_APPEND: lines of several processes never mix)
# when a row starts; a row with hold=True then waits for GATE to exist.
RECORDER = """
    import os
    import time

    LOG = {log!r}
    GATE = {gate!r}

    def rec_entrypoint_v1(ctx, n: int, hold: bool = False):
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f"{{os.getpid()}} {{n}}\\n".encode())
        finally:
            os.close(fd)
        deadline = time.monotonic() + 60
        while hold and not os.path.exists(GATE):
            if time.monotonic() > deadline:
                raise TimeoutError("the test never opened the gate")
            time.sleep(0.002)
        return n
"""

# Like RECORDER, but each process's first row waits until MEET processes have
# started a row: that many executors are certainly running the batch at once.
PAIR = """
    import os
    import time

    LOG = {log!r}
    MEET = {meet!r}
    _met = False

    def pair_entrypoint_v1(ctx, n: int):
        global _met
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f"{{os.getpid()}} {{n}}\\n".encode())
        finally:
            os.close(fd)
        deadline = time.monotonic() + 60
        while not _met:
            with open(LOG) as file:
                _met = len({{line.split()[0] for line in file}}) >= MEET
            if time.monotonic() > deadline:
                raise TimeoutError("the other executors never started a row")
            time.sleep(0.002)
        return n
"""


CATALOG = "catalog"  # the name of the catalog database among the engine's databases


def database(engine: Engine) -> str:
    """The catalog database of the test: a file in its folder (SQLite), a database of its own (PostgreSQL)."""
    return engine.url(CATALOG)


@pytest.fixture
def catalog(layout: Layout, engine: Engine):
    layout.interface("calc", CALC)
    layout.interface("even", EVEN)
    with layout.catalog(database=database(engine)) as opened:
        yield opened


def numbers(batch) -> list[int]:
    return [row.number for row in batch.rows()]


def log_lines(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines()]  # type: ignore[misc]


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.005)


def raw_sqlite(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@contextmanager
def raw(engine: Engine) -> Iterator[Any]:
    """A driver connection to the catalog database, outside the library (autocommit; SQLite checks foreign keys)."""
    with engine.raw(CATALOG) as conn:
        if not engine.postgres:
            conn.execute("PRAGMA foreign_keys = ON")
        yield conn


def write(engine: Engine, sql: str, params: tuple[Any, ...] = ()) -> None:
    """One statement (``?`` placeholders) run on the catalog database outside the library."""
    with raw(engine) as conn:
        conn.execute(sql.replace("?", "%s") if engine.postgres else sql, params)


def frozen_error(engine: Engine) -> type[Exception]:
    """The driver's error for the triggers' refusal: SQLite's RAISE(ABORT) is an IntegrityError,
    PL/pgSQL's RAISE EXCEPTION a RaiseException (SQLSTATE P0001)."""
    if engine.postgres:
        import psycopg

        return psycopg.errors.RaiseException  # type: ignore[no-any-return]
    return sqlite3.IntegrityError


def assert_frozen_refusal(error: BaseException, engine: Engine) -> None:
    """``error`` is the triggers' refusal, word for word."""
    assert type(error) is frozen_error(engine)
    if engine.postgres:  # its str() adds a CONTEXT line naming the trigger function
        assert (error.sqlstate, error.diag.message_primary) == ("P0001", FROZEN)  # type: ignore[attr-defined]
        assert str(error).startswith(FROZEN + "\n")
    else:
        assert str(error) == FROZEN


def wait_for_sessions_to_end(engine: Engine) -> None:
    """PostgreSQL: wait until no other session is open on the catalog database.

    A killed executor's transaction ends (rolled back, its row locks gone) when the server
    notices its connection closed: soon, but not at once. SQLite has no server: nothing to wait for.
    """
    if not engine.postgres:
        return

    def ended() -> bool:
        return engine.query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()", name=CATALOG,
        ) == [(0,)]

    wait_for(ended, "the sessions of the killed executor to end")


def row_locked(engine: Engine, batch_id: int, number: int) -> bool:
    """PostgreSQL: whether an executor holds the row (its lock, taken with FOR UPDATE) right now."""
    free = engine.query(
        "SELECT number FROM taskcatalog_batch_rows WHERE batch = ? AND number = ? FOR UPDATE SKIP LOCKED",
        (batch_id, number), name=CATALOG,
    )  # autocommit: a lock taken here ends with the statement
    assert engine.query("SELECT 1 FROM taskcatalog_batch_rows WHERE batch = ? AND number = ?", (batch_id, number),
                        name=CATALOG) == [(1,)], f"batch {batch_id} has no row {number}"
    return not free


# -- header, rows, numbering ---------------------------------------------------------------


def test_create_stores_the_header_and_numbered_rows(catalog):
    before = dt.datetime.now(dt.timezone.utc)
    batch = catalog.batches.create("calc", 1, customer="acme", rows=[{"n": 1}, {"n": 2, "mode": "none"}],
                                   description="November run", created_by="alice")
    after = dt.datetime.now(dt.timezone.utc)
    assert (batch.interface, batch.version, batch.customer, batch.description) == ("calc", 1, "acme", "November run")
    assert batch.status == "pending" and batch.depends_on == [] and batch.why_not_execute() is None
    assert batch.created_by == "alice" and before <= batch.created_at <= after
    assert batch.created_at.tzinfo == dt.timezone.utc
    assert (batch.executed_at, batch.executed_by) == (None, None)
    assert batch.rows() == [BatchRow(1, {"n": 1}, "pending"), BatchRow(2, {"n": 2, "mode": "none"}, "pending")]
    assert batch.counts() == {"pending": 2, "ok": 0, "error": 0, "skipped": 0}
    assert batch.to_dict() == {
        "id": batch.id, "interface": "calc", "version": 1, "customer": "acme", "description": "November run",
        "status": "pending", "created_at": batch.created_at.isoformat(), "created_by": "alice",
        "started_at": None, "executed_at": None, "executed_by": None, "depends_on": [],
        "rows": {"pending": 2, "ok": 0, "error": 0, "skipped": 0},
    }
    assert repr(batch) == f"<Batch {batch.id} calc v1 customer='acme' pending>"
    again = catalog.batches.get(batch.id)
    assert again.to_dict() == batch.to_dict() and again.rows() == batch.rows()


def test_who_defaults_to_the_os_user_and_can_be_given(catalog):
    batch = catalog.batches.create("calc", 1, rows=[{"n": 1}])
    assert batch.created_by == getpass.getuser()
    batch.execute()
    assert batch.executed_by == getpass.getuser()
    other = catalog.batches.create("calc", 1, rows=[{"n": 1}], created_by="alice")
    started = dt.datetime.now(dt.timezone.utc)
    other.execute(executed_by="bob")
    assert (other.created_by, other.executed_by) == ("alice", "bob")
    assert started <= other.executed_at <= dt.datetime.now(dt.timezone.utc)
    with pytest.raises(ValueError) as caught:
        catalog.batches.create("calc", 1, created_by="  ")
    assert str(caught.value) == "who created or executed a batch must be a non-empty string, not '  '"
    assert [b.id for b in catalog.batches.list()] == [other.id, batch.id]


def test_add_update_remove_keep_numbers(catalog):
    batch = catalog.batches.create("calc", 1, rows=[{"n": 1}, {"n": 2}, {"n": 3}])
    assert batch.add_rows([{"n": 4}, {"n": 5}]) == [4, 5]
    batch.remove_row(2)
    batch.remove_row(5)
    assert numbers(batch) == [1, 3, 4]
    assert batch.add_rows(iter([{"n": 6}])) == [6]  # removed numbers are not reused
    batch.update_row(3, {"n": 30, "mode": "none"})
    assert [(r.number, r.args) for r in batch.rows()] == [(1, {"n": 1}), (3, {"n": 30, "mode": "none"}),
                                                          (4, {"n": 4}), (6, {"n": 6})]
    assert batch.add_rows([]) == []
    with pytest.raises(LookupError) as caught:
        batch.remove_row(2)
    assert str(caught.value) == f"batch {batch.id} has no row 2"
    with pytest.raises(LookupError) as caught:
        batch.update_row(5, {"n": 5})
    assert str(caught.value) == f"batch {batch.id} has no row 5"
    with pytest.raises(ValueError) as caught:
        batch.remove_row(0)
    assert str(caught.value) == "a row number is an int >= 1, not 0"
    with pytest.raises(ArgumentError) as caught:
        batch.update_row(3, {"n": 30, "nope": 1})
    assert str(caught.value).startswith("row 3 of calc v1: unexpected keyword argument(s) 'nope'")
    assert batch.rows()[1].args == {"n": 30, "mode": "none"}
    batch.execute()
    assert [(r.number, r.value) for r in batch.rows()] == [(1, 2), (3, None), (4, 8), (6, 12)]


def test_update_row_with_a_bad_number_says_so(catalog):
    batch = catalog.batches.create("calc", 1, rows=[{"n": 1}])
    for bad in ("1", 1.0, True, None):
        with pytest.raises(ValueError) as caught:
            batch.update_row(bad, {"n": 2})  # type: ignore[arg-type]
        assert str(caught.value) == f"a row number is an int >= 1, not {bad!r}"
    assert batch.rows()[0].args == {"n": 1}


def test_rows_filter_by_status_and_page(catalog):
    batch = catalog.batches.create(
        "calc", 1, rows=[{"n": n, "mode": "raise" if n % 3 == 0 else "double"} for n in range(1, 11)]
    )
    assert numbers(batch) == list(range(1, 11))
    assert [r.number for r in batch.rows(offset=3, limit=4)] == [4, 5, 6, 7]
    assert [r.number for r in batch.rows(offset=8)] == [9, 10]
    assert batch.rows(limit=0) == [] and batch.rows(offset=10) == []
    assert [r.number for r in batch.rows(status="pending", offset=9, limit=5)] == [10]
    assert batch.rows(status="ok") == []
    assert batch.execute() == {"pending": 0, "ok": 7, "error": 3, "skipped": 0}
    assert [r.number for r in batch.rows(status="error")] == [3, 6, 9]
    assert [r.number for r in batch.rows(status="ok", offset=2, limit=3)] == [4, 5, 7]
    assert batch.rows(status="pending") == []
    with pytest.raises(ValueError) as caught:
        batch.rows(status="done")
    assert str(caught.value) == "status must be one of pending, ok, error, skipped, not 'done'"
    for name, value in (("offset", -1), ("limit", -2), ("limit", True), ("offset", 1.5)):
        with pytest.raises(ValueError) as caught:
            batch.rows(**{name: value})
        assert str(caught.value) == f"{name} must be an int >= 0, not {value!r}"


def test_list_newest_first_and_by_status(catalog):
    first = catalog.batches.create("calc", 1, rows=[{"n": 1}])
    second = catalog.batches.create("calc", 1)
    third = catalog.batches.create("calc", 1, rows=[{"n": 3}])
    second.execute()
    assert [b.id for b in catalog.batches.list()] == [third.id, second.id, first.id]
    assert [b.id for b in catalog.batches.list(status="pending")] == [third.id, first.id]
    assert [b.id for b in catalog.batches.list("executed")] == [second.id]
    assert catalog.batches.list("executing") == []
    with pytest.raises(ValueError) as caught:
        catalog.batches.list("done")
    assert str(caught.value) == "status must be one of pending, executing, executed, not 'done'"


def test_get_of_a_missing_batch_is_batch_not_found(catalog, engine):
    with pytest.raises(BatchNotFound) as caught:
        catalog.batches.get(42)
    # The database's label: SQLite's path; PostgreSQL's URL less any password (these URLs have none).
    assert str(caught.value) == f"no batch 42 in {database(engine)}"
    assert isinstance(caught.value, LookupError)
    with pytest.raises(TypeError) as caught:
        catalog.batches.get("1")  # type: ignore[arg-type]
    assert str(caught.value) == "a batch id is an int, not '1'"


def test_batches_need_a_catalog_database(layout):
    layout.interface("calc", CALC)
    with layout.catalog() as catalog, pytest.raises(CatalogError) as caught:
        catalog.batches
    assert str(caught.value) == (
        "batches live in the catalog database: give the catalog one (database=..., or "
        "[catalog] database in taskcatalog.toml)"
    )


# -- rows checked when added -------------------------------------------------------------


def deeply_nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"n": 1, "extra": 2}, "unexpected keyword argument(s) 'extra'"),
        ({"mode": "double"}, "no value for required argument(s) 'n'"),
        ({"n": 1, "ctx": 2}, "unexpected keyword argument(s) 'ctx'"),
        ({"x": 1}, "unexpected keyword argument(s) 'x'; no value for required argument(s) 'n'"),
        ({"n": {1, 2}}, "its values cannot be stored as JSON (Object of type set is not JSON serializable)"),
        ({"n": float("nan")}, "its values cannot be stored as JSON (NaN and infinite floats have no JSON form)"),
        ({"n": float("-inf")}, "its values cannot be stored as JSON (NaN and infinite floats have no JSON form)"),
        ({"n": deeply_nested(100_000)}, "its values cannot be stored as JSON (nested too deeply)"),
    ],
)
def test_a_row_the_entrypoint_cannot_take_stores_nothing(catalog, row, reason):
    batch = catalog.batches.create("calc", 1, rows=[{"n": 1}])
    with pytest.raises(ArgumentError) as caught:
        batch.add_rows([{"n": 2}, {"n": 3}, row, {"n": 5}])
    assert str(caught.value) == f"row 4 of calc v1: {reason}; it accepts: n, mode; nothing was stored"
    assert (caught.value.interface, caught.value.version) == ("calc", 1)
    assert numbers(batch) == [1]
    assert batch.add_rows([{"n": 2}]) == [2]  # the refused call used up no numbers


def test_a_row_that_is_no_mapping(catalog):
    batch = catalog.batches.create("calc", 1)
    with pytest.raises(ArgumentError) as caught:
        batch.add_rows([{"n": 1}, [("n", 2)]])  # type: ignore[list-item]
    assert str(caught.value) == "row 2 of calc v1 is a list, not a mapping of keyword arguments"
    with pytest.raises(TypeError) as caught:
        batch.add_rows({"n": 1})  # type: ignore[arg-type]
    assert str(caught.value) == "rows must be an iterable of mappings (keyword arguments), not dict"
    assert batch.rows() == []


def test_create_with_a_bad_row_creates_no_batch(catalog):
    with pytest.raises(ArgumentError) as caught:
        catalog.batches.create("calc", 1, customer="acme", rows=[{"n": 1}, {"m": 2}])
    assert str(caught.value) == (
        "row 2 of calc v1: unexpected keyword argument(s) 'm'; no value for required argument(s) 'n'; "
        "it accepts: n, mode; nothing was stored"
    )
    assert caught.value.customer == "acme"
    assert catalog.batches.list() == []


def test_create_names_what_does_not_exist(catalog):
    with pytest.raises(InterfaceNotFound):
        catalog.batches.create("nope", 1)
    with pytest.raises(VersionNotFound) as caught:
        catalog.batches.create("calc", 9)
    assert str(caught.value) == "interface 'calc' has no version 9 (versions: 1)"
    with pytest.raises(ArgumentError) as caught:
        catalog.batches.create("calc", "latest")  # type: ignore[arg-type]
    assert str(caught.value) == "a batch runs one exact version: an int >= 1, not 'latest'"
    assert catalog.batches.list() == []


# -- execution -----------------------------------------------------------------------------


def test_execute_stores_each_outcome(catalog):
    batch = catalog.batches.create("calc", 1, customer="acme", rows=[
        {"n": 1}, {"n": 2, "mode": "raise"}, {"n": 3, "mode": "none"}, {"n": 4, "mode": "tuple"},
        {"n": 5, "mode": "context"},
    ])
    assert batch.execute() == {"pending": 0, "ok": 4, "error": 1, "skipped": 0}
    assert batch.status == "executed"
    rows = batch.rows()
    assert [(r.number, r.status, r.value, r.value_is_repr, r.error_type, r.error) for r in rows] == [
        (1, "ok", 2, False, None, None),
        (2, "error", None, False, "ValueError", "n=2 exploded"),
        (3, "ok", None, False, None, None),
        (4, "ok", [4, "a"], False, None, None),
        (5, "ok", {"batch": batch.id, "customer": "acme", "interface": "calc"}, False, None, None),
    ]
    assert len({r.call_id for r in rows}) == 5 and all(r.duration >= 0 for r in rows)
    assert all(batch.created_at <= r.finished_at <= batch.executed_at for r in rows)
    assert rows[1].to_dict() == {
        "number": 2, "args": {"n": 2, "mode": "raise"}, "status": "error", "value": None, "value_is_repr": False,
        "error_type": "ValueError", "error": "n=2 exploded", "call_id": rows[1].call_id,
        "duration": rows[1].duration, "finished_at": rows[1].finished_at.isoformat(),
    }
    # Each row went through catalog.run: recorded in the telemetry as a call of its own.
    recorded = {r.call_id: r.status for r in catalog.history(interface="calc")}
    assert {r.call_id: r.status for r in rows} == recorded
    header = batch.to_dict()
    assert header["status"] == "executed" and header["rows"]["ok"] == 4
    assert header["started_at"] <= header["executed_at"]


def test_values_json_cannot_hold_are_kept_as_their_repr(catalog):
    batch = catalog.batches.create("calc", 1, rows=[
        {"n": 1, "mode": "set"}, {"n": 2, "mode": "nan"}, {"n": 3, "mode": "object"}, {"n": 4},
    ])
    batch.execute()
    assert [(r.status, r.value, r.value_is_repr) for r in batch.rows()] == [
        ("ok", "{1}", True), ("ok", "nan", True), ("ok", "Point(3)", True), ("ok", 8, False),
    ]
    assert batch.rows()[2].to_dict()["value_is_repr"] is True


def test_a_skipped_task_row(catalog):
    batch = catalog.batches.create("even", 1, rows=[{"n": 1}, {"n": 2}, {"n": 3}])
    assert batch.execute() == {"pending": 0, "ok": 1, "error": 0, "skipped": 2}
    assert [(r.status, r.value) for r in batch.rows()] == [("skipped", None), ("ok", 2), ("skipped", None)]


def test_an_error_whose_str_raises_is_stored_and_the_batch_goes_on(catalog):
    batch = catalog.batches.create("calc", 1, rows=[{"n": 1, "mode": "unprintable"}, {"n": 2}])
    assert batch.execute() == {"pending": 0, "ok": 1, "error": 1, "skipped": 0}
    row = batch.rows()[0]
    assert (row.status, row.error_type) == ("error", "Unprintable")
    assert row.error == "<Unprintable whose str() raised RuntimeError>"
    assert batch.status == "executed"


def test_progress_is_told_after_each_row(catalog):
    batch = catalog.batches.create("calc", 1, rows=[{"n": n, "mode": "raise" if n == 2 else "double"}
                                                   for n in range(1, 6)])
    seen: list[BatchProgress] = []
    batch.execute(progress=seen.append)
    assert [(p.batch, p.done, p.total, p.errors, p.ran) for p in seen] == [
        (batch.id, 1, 5, 0, 1), (batch.id, 2, 5, 1, 2), (batch.id, 3, 5, 1, 3), (batch.id, 4, 5, 1, 4),
        (batch.id, 5, 5, 1, 5),
    ]
    assert all(a.elapsed <= b.elapsed for a, b in zip(seen, seen[1:]))


def test_a_batch_of_no_rows_executes(catalog):
    batch = catalog.batches.create("calc", 1)
    calls: list[BatchProgress] = []
    assert batch.execute(progress=calls.append) == {"pending": 0, "ok": 0, "error": 0, "skipped": 0}
    assert calls == [] and batch.status == "executed" and batch.executed_at is not None


def test_an_executing_batch_cannot_be_edited(catalog):
    batch = catalog.batches.create("calc", 1, rows=[{"n": 1}, {"n": 2}])
    other = catalog.batches.create("calc", 1)
    refusals: list[tuple[type, str]] = []

    def edit(step: BatchProgress) -> None:
        if step.done != 1:
            return
        for change in (lambda: batch.add_rows([{"n": 3}]), lambda: batch.update_row(2, {"n": 4}),
                       lambda: batch.remove_row(2), lambda: batch.add_dependency(other)):
            try:
                change()
            except Exception as exc:  # noqa: BLE001 - collected and checked below
                refusals.append((type(exc), str(exc)))

    batch.execute(progress=edit)
    assert refusals == [
        (CatalogError, f"batch {batch.id} is executing: it cannot {verb}; rows change only while it is pending")
        for verb in ("take new rows", "change a row", "lose a row", "take a new dependency")
    ]
    assert [r.args for r in batch.rows()] == [{"n": 1}, {"n": 2}] and batch.depends_on == []


def test_an_executed_batch_is_frozen(catalog):
    batch = catalog.batches.create("calc", 1, rows=[{"n": 1}])
    other = catalog.batches.create("calc", 1)
    batch.execute()
    for change, verb in ((lambda: batch.add_rows([{"n": 2}]), "take new rows"),
                         (lambda: batch.update_row(1, {"n": 2}), "change a row"),
                         (lambda: batch.remove_row(1), "lose a row"),
                         (lambda: batch.add_dependency(other), "take a new dependency"),
                         (lambda: batch.execute(), "run again")):
        with pytest.raises(BatchFrozen) as caught:
            change()
        assert str(caught.value) == f"batch {batch.id} is executed and frozen: it cannot {verb}"
    assert batch.why_not_execute() == f"batch {batch.id} is already executed (and frozen)"
    assert [(r.number, r.args, r.value) for r in batch.rows()] == [(1, {"n": 1}, 2)]


# -- a keyboard interrupt, a progress callback that raises -------------------------------


def test_an_interrupt_leaves_no_row_claimed(catalog):
    """Ctrl-C during a row: the row goes back to pending, and execute() again in the same process
    (where the interrupted executor still counts as alive) runs it and finishes the batch."""
    batch = catalog.batches.create("calc", 1, rows=[{"n": 1}, {"n": 2, "mode": "interrupt"}, {"n": 3}])
    with pytest.raises(KeyboardInterrupt):
        batch.execute()
    assert [r.status for r in batch.rows()] == ["ok", "pending", "pending"]
    assert batch.status == "executing"
    assert batch.execute() == {"pending": 0, "ok": 3, "error": 0, "skipped": 0}
    assert [r.value for r in batch.rows()] == [2, 2, 6] and batch.status == "executed"


def test_a_progress_callback_that_raises_leaves_no_row_claimed(catalog):
    batch = catalog.batches.create("calc", 1, rows=[{"n": 1}, {"n": 2}, {"n": 3}])

    def broken(step: BatchProgress) -> None:
        if step.done == 1:
            raise BrokenPipeError("stdout went away")

    with pytest.raises(BrokenPipeError):
        batch.execute(progress=broken)
    assert [r.status for r in batch.rows()] == ["ok", "pending", "pending"]
    assert batch.execute() == {"pending": 0, "ok": 3, "error": 0, "skipped": 0}
    assert batch.status == "executed"


# -- dependencies --------------------------------------------------------------------------


def test_a_batch_waits_for_its_dependencies(catalog):
    first = catalog.batches.create("calc", 1, rows=[{"n": 1}])
    second = catalog.batches.create("calc", 1)
    third = catalog.batches.create("calc", 1, rows=[{"n": 3}], depends_on=[first, second.id])
    assert third.depends_on == [first.id, second.id]
    reason = f"batch {third.id} depends on batches not executed yet: {first.id} (pending), {second.id} (pending)"
    assert third.why_not_execute() == reason
    with pytest.raises(CatalogError) as caught:
        third.execute()
    assert type(caught.value) is CatalogError and str(caught.value) == f"cannot execute: {reason}"
    assert third.status == "pending" and [r.status for r in third.rows()] == ["pending"]
    second.execute()
    assert third.why_not_execute() == f"batch {third.id} depends on batches not executed yet: {first.id} (pending)"
    first.execute()
    assert third.why_not_execute() is None
    assert third.execute()["ok"] == 1
    assert third.depends_on == [first.id, second.id]


def test_a_dependency_cycle_is_refused_when_made(catalog):
    a = catalog.batches.create("calc", 1)
    b = catalog.batches.create("calc", 1, depends_on=[a])
    c = catalog.batches.create("calc", 1, depends_on=[b])
    with pytest.raises(CatalogError) as caught:
        a.add_dependency(c)
    assert str(caught.value) == (
        f"batch {a.id} cannot depend on batch {c.id}: that makes a cycle ({a.id} -> {c.id} -> {b.id} -> {a.id})"
    )
    with pytest.raises(CatalogError) as caught:
        a.add_dependency(a.id)
    assert str(caught.value) == f"batch {a.id} cannot depend on batch {a.id}: that makes a cycle ({a.id} -> {a.id})"
    assert a.depends_on == []
    a.add_dependency(catalog.batches.create("calc", 1))  # not a cycle
    assert len(a.depends_on) == 1


def test_depending_on_a_missing_batch(catalog):
    a = catalog.batches.create("calc", 1)
    with pytest.raises(BatchNotFound) as caught:
        a.add_dependency(99)
    assert str(caught.value) == f"batch {a.id} cannot depend on batch 99: there is no batch 99"
    with pytest.raises(BatchNotFound):
        catalog.batches.create("calc", 1, rows=[{"n": 1}], depends_on=[a, 99])
    assert [b.id for b in catalog.batches.list()] == [a.id]  # nothing of the refused batch was stored
    with pytest.raises(TypeError) as caught:
        a.add_dependency("1")  # type: ignore[arg-type]
    assert str(caught.value) == "a dependency is a Batch or a batch id, not '1'"


# -- the interface changed between create and execute -------------------------------------


@pytest.mark.parametrize("change", ["deleted", "broken", "version gone"])
def test_an_interface_that_changed_is_refused_and_rows_stay(layout, engine, change):
    path = layout.interface("calc", CALC)
    with layout.catalog(database=database(engine)) as catalog:
        batch = catalog.batches.create("calc", 1, rows=[{"n": 1}, {"n": 2}])
        before = batch.rows()
    if change == "deleted":
        path.unlink()
        expected, error = f"no interface 'calc' in the catalog (interfaces: none; folders: {layout.interfaces})", InterfaceNotFound
    elif change == "broken":
        layout.interface("calc", "def calc_entrypoint_v1(ctx, n):\n    return (\n")
        expected, error = f"cannot load interface 'calc' from {path}:2: SyntaxError: '(' was never closed", LoadError
    else:
        layout.interface("calc", "def calc_entrypoint_v2(ctx, n):\n    return n\n")
        expected, error = "interface 'calc' has no version 1 (versions: 2)", VersionNotFound
    with layout.catalog(database=database(engine)) as catalog:
        batch = catalog.batches.get(batch.id)
        reason = batch.why_not_execute()
        assert reason == f"batch {batch.id} cannot run calc v1: {expected}"
        with pytest.raises(CatalogError) as caught:
            batch.execute()
        assert str(caught.value) == f"cannot execute: {reason}"
        assert batch.status == "pending" and batch.rows() == before
        with pytest.raises(error):
            batch.add_rows([{"n": 3}])
        assert batch.rows() == before


def test_a_version_retired_since_create_cannot_execute(layout, engine):
    source = """
        from taskcatalog import deprecated

        @deprecated("use v2", sunset="{sunset}")
        def old_entrypoint_v1(ctx, n):
            return n

        def old_entrypoint_v2(ctx, n):
            return n
    """
    layout.interface("old", source.format(sunset="2999-01-01"))
    with layout.catalog(database=database(engine)) as catalog:
        batch = catalog.batches.create("old", 1, rows=[{"n": 1}])
    layout.interface("old", source.format(sunset="2020-01-01"))
    with layout.catalog(database=database(engine)) as catalog:
        batch = catalog.batches.get(batch.id)
        retired = f"old v1 was retired after 2020-01-01: use v2 ({layout.interfaces / 'old.py'}:4)"
        reason = f"batch {batch.id} cannot run old v1: {retired}"
        assert batch.why_not_execute() == reason
        with pytest.raises(CatalogError) as caught:
            batch.execute()
        assert str(caught.value) == f"cannot execute: {reason}"
        assert batch.status == "pending" and [r.status for r in batch.rows()] == ["pending"]
        with pytest.raises(VersionRetired) as caught:
            catalog.batches.create("old", 1, rows=[{"n": 1}])
        assert str(caught.value) == retired


# -- the database refuses changes to an executed batch -------------------------------------

FROZEN = "taskcatalog: this batch is executed and frozen"
TABLES = ("taskcatalog_batches", "taskcatalog_batch_rows", "taskcatalog_batch_dependencies",
          "taskcatalog_batch_outcomes", "taskcatalog_batch_claims")


@pytest.fixture
def executed(catalog, engine):
    """(executed batch id, pending batch id, raw connection): each depends on a batch of its own."""
    before = catalog.batches.create("calc", 1, rows=[{"n": 0}])
    before.execute()
    batch = catalog.batches.create("calc", 1, rows=[{"n": 1}, {"n": 2}], depends_on=[before])
    if engine.postgres:
        # PostgreSQL's executors lock rows and record no claims; the table is there for a database
        # copied from SQLite, whose claims are frozen too: give the batch one, as a copy would have.
        write(engine, "INSERT INTO taskcatalog_batch_claims (batch, first, last, claimed_by, claimed_at)"
                      " VALUES (?, 1, 2, 'sqlite-host 1 p', 0)", (batch.id,))
    batch.execute()
    pending = catalog.batches.create("calc", 1, rows=[{"n": 3}], depends_on=[catalog.batches.create("calc", 1)])
    with raw(engine) as conn:
        # Every table holds something of the executed batch, for the statements to change.
        for table in TABLES:
            assert conn.execute(f"SELECT count(*) FROM {table} WHERE {'id' if table == TABLES[0] else 'batch'}"
                                f" = {batch.id}").fetchall()[0][0] > 0, table
        yield batch.id, pending.id, conn


def spelled(sqlite: str, postgres: str, id: str) -> Any:
    """One change, spelled per engine: PostgreSQL has no INSERT OR REPLACE; its way to overwrite a
    row is the upsert, INSERT ... ON CONFLICT DO UPDATE (a BEFORE INSERT trigger, then on the
    conflict the BEFORE UPDATE one, of the row it would overwrite)."""
    return pytest.param({"sqlite": sqlite, "postgres": postgres}, id=id)


def in_spelling(sql: Any, engine: Engine) -> str:
    return sql[engine.name] if isinstance(sql, dict) else sql


@pytest.mark.parametrize("sql", [
    "UPDATE taskcatalog_batch_rows SET args = '{{}}' WHERE batch = {b}",
    "UPDATE taskcatalog_batch_outcomes SET status = 'error', value = NULL WHERE batch = {b} AND number = 1",
    "DELETE FROM taskcatalog_batch_outcomes WHERE batch = {b} AND number = 2",
    spelled("INSERT OR REPLACE INTO taskcatalog_batch_outcomes (key, batch, number, status, finished_at)"
            " VALUES ({b} * 4294967296 + 1, {b}, 1, 'ok', 0)",
            "INSERT INTO taskcatalog_batch_outcomes (key, batch, number, status, finished_at)"
            " VALUES ({b} * 4294967296 + 1, {b}, 1, 'ok', 0)"
            " ON CONFLICT (key) DO UPDATE SET status = excluded.status, finished_at = excluded.finished_at",
            id="replace-outcome"),
    "UPDATE taskcatalog_batch_claims SET claimed_by = 'mallory' WHERE batch = {b}",
    "DELETE FROM taskcatalog_batch_claims WHERE batch = {b}",
    "INSERT INTO taskcatalog_batch_claims (batch, first, last, claimed_by, claimed_at) VALUES ({b}, 50, 60, 'x', 0)",
    "DELETE FROM taskcatalog_batch_rows WHERE batch = {b}",
    "INSERT INTO taskcatalog_batch_rows (batch, number, args) VALUES ({b}, 3, '{{}}')",
    spelled("INSERT OR REPLACE INTO taskcatalog_batch_rows (batch, number, args) VALUES ({b}, 1, '{{}}')",
            "INSERT INTO taskcatalog_batch_rows (batch, number, args) VALUES ({b}, 1, '{{}}')"
            " ON CONFLICT (batch, number) DO UPDATE SET args = excluded.args",
            id="replace-row"),
    "UPDATE taskcatalog_batches SET description = 'edited' WHERE id = {b}",
    "UPDATE taskcatalog_batches SET status = 'pending' WHERE id = {b}",
    "DELETE FROM taskcatalog_batches WHERE id = {b}",
    "INSERT INTO taskcatalog_batch_dependencies (batch, depends_on) VALUES ({b}, {p})",
    "DELETE FROM taskcatalog_batch_dependencies WHERE batch = {b}",
])
def test_triggers_refuse_changes_to_an_executed_batch(executed, engine, sql):
    batch, pending, conn = executed
    state = [conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES]
    with pytest.raises(frozen_error(engine)) as caught:
        conn.execute(in_spelling(sql, engine).format(b=batch, p=pending))
    assert_frozen_refusal(caught.value, engine)
    assert [conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES] == state


@pytest.mark.parametrize("sql", [
    # Ways around the triggers of SQLite's 0002_batches.sql, closed by its 0003_batch_claims.sql
    # (PostgreSQL's one trigger function checks the old and the new owner of every change).
    pytest.param("UPDATE taskcatalog_batch_dependencies SET depends_on = {p} WHERE batch = {b}",
                 id="retarget-dependency"),
    pytest.param("UPDATE taskcatalog_batch_dependencies SET batch = {b} WHERE batch = {p}", id="move-dependency-in"),
    pytest.param("UPDATE taskcatalog_batch_rows SET batch = {b}, number = 99 WHERE batch = {p}", id="move-row-in"),
    # SQLite: REPLACE deletes the executed header without firing its DELETE trigger (recursive_triggers
    # is off). PostgreSQL: the upsert overwrites it through an UPDATE, which its trigger refuses.
    spelled("INSERT OR REPLACE INTO taskcatalog_batches (id, interface, version, created_at, created_by)"
            " VALUES ({b}, 'calc', 1, 0, 'mallory')",
            "INSERT INTO taskcatalog_batches (id, interface, version, created_at, created_by)"
            " VALUES ({b}, 'calc', 1, 0, 'mallory')"
            " ON CONFLICT (id) DO UPDATE SET created_by = excluded.created_by, status = 'pending'",
            id="replace-header"),
])
def test_triggers_refuse_every_way_around(executed, engine, sql):
    batch, pending, conn = executed
    with pytest.raises(frozen_error(engine)) as caught:
        conn.execute(in_spelling(sql, engine).format(b=batch, p=pending))
    assert_frozen_refusal(caught.value, engine)


def test_the_library_reports_a_database_refusal_as_batch_frozen(catalog, engine):
    """A change that passed the Python check but met the trigger (another process executed it meanwhile)."""
    batch = catalog.batches.create("calc", 1, rows=[{"n": 1}])
    def rows_while_another_process_executes_it():
        yield {"n": 2}
        write(engine, "INSERT INTO taskcatalog_batch_outcomes (key, batch, number, status, finished_at)"
                      " VALUES (? * 4294967296 + 1, ?, 1, 'ok', 0)", (batch.id, batch.id))
        write(engine, "UPDATE taskcatalog_batches SET status = 'executed' WHERE id = ?", (batch.id,))
        yield {"n": 3}

    with pytest.raises(BatchFrozen) as caught:
        batch.add_rows(rows_while_another_process_executes_it())
    assert str(caught.value) == f"batch {batch.id} is executed and frozen (refused by the database)"
    assert_frozen_refusal(caught.value.__cause__, engine)
    assert [(r.number, r.status) for r in batch.rows()] == [(1, "ok")]


def test_a_database_made_before_claims_keeps_its_batches(layout, tmp_path):
    """0003_batch_claims moves 0002's outcomes to their own table: finished rows stay finished, a row
    'running' when the process died is pending again, and an executed batch stays executed and frozen.

    SQLite only: it upgrades a database made by SQLite's 0002, which PostgreSQL never had (its
    migrations start in the shape SQLite's 0003 gives)."""
    from taskcatalog import db
    from taskcatalog.stores import catalog_migrations

    layout.interface("calc", CALC)
    path = str(tmp_path / "var" / "c.sqlite3")
    Path(path).parent.mkdir()
    with closing(db.connect(path)) as conn:
        conn.upgrade(catalog_migrations("sqlite")[:2])  # 0001_telemetry, 0002_batches
    with closing(raw_sqlite(path)) as conn:
        for batch, status in ((1, "executing"), (2, "executed")):
            conn.execute("INSERT INTO taskcatalog_batches (id, interface, version, status, created_at, created_by)"
                         " VALUES (?, 'calc', 1, 'pending', 0, 'alice')", (batch,))
            conn.executemany("INSERT INTO taskcatalog_batch_rows (batch, number, args) VALUES (?, ?, ?)",
                             [(batch, n, f'{{"n": {n}}}') for n in (1, 2, 3)])
            conn.execute("UPDATE taskcatalog_batch_rows SET status = 'ok', value = '2', claimed_by = 'h 1 p',"
                         " finished_at = 5 WHERE batch = ? AND number = 1", (batch,))
            conn.execute("UPDATE taskcatalog_batch_rows SET status = 'running', claimed_by = 'h 1 p'"
                         " WHERE batch = ? AND number = 2", (batch,))
            conn.execute("UPDATE taskcatalog_batches SET status = ? WHERE id = ?", (status, batch))
    with layout.catalog(database=path) as catalog:
        resumed, frozen = catalog.batches.get(1), catalog.batches.get(2)
        assert [(r.status, r.value) for r in resumed.rows()] == [("ok", 2), ("pending", None), ("pending", None)]
        assert resumed.execute() == {"pending": 0, "ok": 3, "error": 0, "skipped": 0}
        assert [r.value for r in resumed.rows()] == [2, 4, 6] and resumed.status == "executed"
        assert frozen.status == "executed" and frozen.rows()[0].finished_at == dt.datetime.fromtimestamp(5, dt.timezone.utc)
    with closing(raw_sqlite(path)) as conn, pytest.raises(sqlite3.IntegrityError) as caught:
        conn.execute("DELETE FROM taskcatalog_batch_outcomes WHERE batch = 2")
    assert str(caught.value) == FROZEN


# -- kill -9, resume, several executors ----------------------------------------------------

EXECUTE = """
import sys
from taskcatalog import Catalog
catalog = Catalog(sys.argv[1], [], database=sys.argv[2])
catalog.batches.get(int(sys.argv[3])).execute()
catalog.close()
"""


def executor(layout: Layout, engine: Engine, batch_id: int) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, "-c", EXECUTE, str(layout.interfaces), database(engine), str(batch_id)],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def killed(child: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``child`` and check that it died of it (not of something before it)."""
    child.kill()
    _, stderr = child.communicate()
    assert child.returncode == -9, stderr.decode()


@pytest.fixture
def recorder(layout: Layout, tmp_path: Path):
    log, gate = tmp_path / "started.log", tmp_path / "gate"
    layout.interface("rec", RECORDER.format(log=str(log), gate=str(gate)))
    return log, gate


def test_kill_9_mid_row_resumes_with_only_that_row_again(layout, engine, recorder):
    log, gate = recorder
    with layout.catalog(database=database(engine)) as catalog:
        batch = catalog.batches.create("rec", 1, rows=[{"n": n, "hold": n == 5} for n in range(1, 9)])
    child = executor(layout, engine, batch.id)
    try:
        wait_for(lambda: (child.pid, 5) in log_lines(log) or child.poll() is not None, "row 5 to start")
        if engine.postgres:  # the executor holds the row it runs: its lock, in the transaction of its outcome
            assert row_locked(engine, batch.id, 5)
    finally:
        killed(child)
    wait_for_sessions_to_end(engine)
    if engine.postgres:  # the server rolled the dead executor's transaction back: the row is free for anyone
        assert not row_locked(engine, batch.id, 5)
    with layout.catalog(database=database(engine)) as catalog:
        batch = catalog.batches.get(batch.id)
        assert batch.status == "executing"
        assert [r.status for r in batch.rows()] == ["ok"] * 4 + ["pending"] * 4
        assert batch.why_not_execute() is None
        with pytest.raises(CatalogError) as caught:
            batch.add_rows([{"n": 9}])
        assert str(caught.value) == (
            f"batch {batch.id} is executing: it cannot take new rows; rows change only while it is pending"
        )
        gate.touch()
        seen: list[BatchProgress] = []
        assert batch.execute(progress=seen.append) == {"pending": 0, "ok": 8, "error": 0, "skipped": 0}
        assert [p.done for p in seen] == [5, 6, 7, 8] and {p.total for p in seen} == {8}
        assert batch.status == "executed" and [r.value for r in batch.rows()] == list(range(1, 9))
    started = log_lines(log)
    # Only the row in flight ran twice. SQLite: the dead executor's claim is taken over once no row
    # is unclaimed. PostgreSQL: its lock went with its connection; the row is the first pending one.
    assert [n for _, n in started[:5]] == [1, 2, 3, 4, 5] and sorted(n for _, n in started[5:]) == [5, 6, 7, 8]
    assert {pid for pid, n in started[:5]} == {child.pid} and {pid for pid, _ in started[5:]} == {os.getpid()}
    if engine.postgres:
        assert [n for _, n in started[5:]] == [5, 6, 7, 8]


def test_kill_9_anywhere_loses_no_row_and_repeats_no_finished_one(layout, engine, recorder):
    log, gate = recorder
    total = 2000
    with layout.catalog(database=database(engine), telemetry=False) as catalog:
        # The last row holds until the gate opens: the child is still executing when killed.
        batch = catalog.batches.create("rec", 1, rows=[{"n": n, "hold": n == total} for n in range(1, total + 1)])
    child = executor(layout, engine, batch.id)
    try:
        wait_for(lambda: len(log_lines(log)) >= 300 or child.poll() is not None, "300 rows to start")
    finally:
        killed(child)
    # PostgreSQL: the row it had locked (started or not) is free once the server has ended its session.
    wait_for_sessions_to_end(engine)
    before_resume = len(log_lines(log))
    with layout.catalog(database=database(engine), telemetry=False) as catalog:
        batch = catalog.batches.get(batch.id)
        finished = {r.number for r in batch.rows() if r.status == "ok"}
        in_flight = {n for _, n in log_lines(log)} - finished  # started, no outcome
        assert len(in_flight) <= 1 and len(finished) >= 299
        gate.touch()
        batch.execute()
        assert batch.status == "executed"
        assert batch.counts()["ok"] == total
    started = log_lines(log)
    again = [n for _, n in started[before_resume:]]
    assert not finished & set(again)  # no finished row ran again
    assert sorted(again) == sorted(set(range(1, total + 1)) - finished)  # the rest once each
    counts = Counter(n for _, n in started)
    assert set(counts) == set(range(1, total + 1))
    assert {n for n, c in counts.items() if c > 1} <= in_flight and max(counts.values()) <= 2


def test_a_worker_killed_mid_row_while_another_runs_loses_no_row(layout, engine, recorder):
    """Two executor processes, A and B, run one batch; A is killed while it runs row 1 and B is in
    the middle of row 10. B goes on, and once it has no other row left runs row 1: no row lost,
    none that finished run again. (SQLite: B takes over the range of the dead process. PostgreSQL:
    the server unlocks A's row when its connection closes; B finds it when it reads the batch again.)"""
    log, gate = recorder
    total = 20
    with layout.catalog(database=database(engine)) as catalog:
        batch = catalog.batches.create("rec", 1, rows=[{"n": n, "hold": n in (1, 10)} for n in range(1, total + 1)])
    a = executor(layout, engine, batch.id)
    b: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: (a.pid, 1) in log_lines(log) or a.poll() is not None, "A to start row 1")
        b = executor(layout, engine, batch.id)
        wait_for(lambda: (b.pid, 10) in log_lines(log) or b.poll() is not None, "B to start row 10")
        assert log_lines(log) == [(a.pid, 1)] + [(b.pid, n) for n in range(2, 11)]  # B passed A's row by
        if engine.postgres:
            assert row_locked(engine, batch.id, 1) and row_locked(engine, batch.id, 10)
        killed(a)
        if engine.postgres:  # pending and free again, while B still holds its own
            wait_for(lambda: not row_locked(engine, batch.id, 1), "the server to unlock the killed worker's row")
            assert row_locked(engine, batch.id, 10)
        with layout.catalog(database=database(engine), telemetry=False) as catalog:
            rows = catalog.batches.get(batch.id).rows()
            assert [r.status for r in rows] == ["pending"] + ["ok"] * 8 + ["pending"] * 11
        gate.touch()
        _, stderr = b.communicate(timeout=120)
    finally:
        for child in (a, b):
            if child is not None and child.poll() is None:
                killed(child)
    assert b.returncode == 0, stderr.decode()
    started = log_lines(log)
    assert started == [(a.pid, 1)] + [(b.pid, n) for n in range(2, total + 1)] + [(b.pid, 1)]
    with layout.catalog(database=database(engine)) as catalog:
        batch = catalog.batches.get(batch.id)
        assert batch.status == "executed" and batch.counts() == {"pending": 0, "ok": total, "error": 0, "skipped": 0}
        assert [r.value for r in batch.rows()] == list(range(1, total + 1))
        # Every outcome is B's (its call ids' prefix), each a call of its own, recorded once.
        rows = batch.rows()
        assert len({r.call_id.partition("-")[0] for r in rows}) == 1 and len({r.call_id for r in rows}) == total
        assert sum(s.calls for s in catalog.stats(interface="rec")) == total


THREADED = """
    import threading

    BOTH = threading.Barrier(2, timeout=60)

    def threaded_entrypoint_v1(ctx, n: int):
        if n <= 2:
            BOTH.wait()  # rows 1 and 2 run at once: each thread holds one of them
        return [threading.current_thread().name, n]
"""


def test_two_threads_of_one_process_share_the_rows_and_run_each_once(layout, engine):
    """Both executors are one process. SQLite: one claimer name, so neither takes the other's rows
    over, and each hands back only its own range. PostgreSQL: each thread has a connection of its
    own, and each skips the row the other has locked."""
    layout.interface("threaded", THREADED)
    with layout.catalog(database=database(engine)) as catalog:
        batch = catalog.batches.create("threaded", 1, rows=[{"n": n} for n in range(1, 501)])
        failures: list[BaseException] = []

        def run() -> None:
            try:
                catalog.batches.get(batch.id).execute()
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                failures.append(exc)

        threads = [threading.Thread(target=run, name=f"executor-{i}") for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert failures == []
        values = [r.value for r in batch.rows()]
        assert batch.status == "executed" and [n for _, n in values] == list(range(1, 501))
        assert {name for name, n in values[:2]} == {"executor-0", "executor-1"}
    with layout.catalog(database=database(engine)) as catalog:  # every call, recorded: none ran twice
        assert sum(s.calls for s in catalog.stats(interface="threaded")) == 500


def execute_in_child(interfaces: str, path: str, batch_id: int, barrier) -> None:
    """Run in a spawned process: wait for the other executors, then execute the batch."""
    with Catalog(interfaces, [], database=path) as catalog:
        batch = catalog.batches.get(batch_id)
        barrier.wait(timeout=60)
        batch.execute()


def executors_share_the_rows(layout: Layout, engine: Engine, tmp_path: Path, count: int, total: int) -> None:
    """``count`` executor processes run one batch of ``total`` rows at once: each row runs exactly
    once, every executor runs some, and the batch ends executed with every call recorded once."""
    log = tmp_path / "started.log"
    layout.interface("pair", PAIR.format(log=str(log), meet=count))
    with layout.catalog(database=database(engine)) as catalog:
        batch = catalog.batches.create("pair", 1, rows=[{"n": n} for n in range(1, total + 1)])
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(count)
    workers = [context.Process(target=execute_in_child, args=(str(layout.interfaces), database(engine),
                                                             batch.id, barrier)) for _ in range(count)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
    finally:
        for worker in workers:
            if worker.is_alive():  # stuck: reported by the assertion below, not left running
                worker.kill()
                worker.join()
    assert [w.exitcode for w in workers] == [0] * count
    started = log_lines(log)
    assert sorted(n for _, n in started) == list(range(1, total + 1))  # every row exactly once
    assert {pid for pid, _ in started} == {w.pid for w in workers}  # and every executor ran rows
    with layout.catalog(database=database(engine)) as catalog:
        batch = catalog.batches.get(batch.id)
        assert batch.status == "executed" and batch.counts()["ok"] == total
        rows = batch.rows()
        assert [r.value for r in rows] == list(range(1, total + 1))
        assert len({r.call_id for r in rows}) == total
        assert len({r.call_id.partition("-")[0] for r in rows}) == count  # the outcomes of every executor
        assert sum(s.calls for s in catalog.stats(interface="pair")) == total  # telemetry: each call once


def test_two_executors_share_the_rows_and_run_each_once(layout, engine, tmp_path):
    executors_share_the_rows(layout, engine, tmp_path, count=2, total=300)


def test_four_workers_on_postgres_share_the_rows_and_run_each_once(layout, postgres, tmp_path):
    """DESIGN 2.14: any number of workers execute one batch, each row locked by the one running it."""
    executors_share_the_rows(layout, postgres, tmp_path, count=4, total=400)
