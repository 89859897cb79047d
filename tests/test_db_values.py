"""Values SQLite cannot store: refused with a TypeError naming the table and column, nothing stored.

SQLite only: which values an engine cannot store is the engine's own rule.
PostgreSQL stores NaN and any int its column's type allows, and refuses
the rest on the server (test_db_postgres.py tests its rules).
"""

from __future__ import annotations

import enum
import math
import sqlite3
from contextlib import closing

import pytest

from taskcatalog.db import Migration, connect

SCHEMA = Migration(
    "lab",
    "0001_readings",
    "CREATE TABLE readings (id INTEGER PRIMARY KEY, name TEXT, value REAL, count INTEGER)",
)
NAN = float("nan")
TOO_BIG = 2**63
TOO_SMALL = -(2**63) - 1
SURROGATE = "x\ud800y"

NAN_STORED = "NaN, which SQLite would store as NULL, losing the value; store None, or the number as text"
NAN_COMPARED = "NaN, which SQLite binds as NULL, so the filter would match nothing; use None to match NULL"
BIG_COMPARED = "the int 9223372036854775808 is outside SQLite's 64-bit integer range (-2**63 to 2**63 - 1)"
SMALL_COMPARED = "the int -9223372036854775809 is outside SQLite's 64-bit integer range (-2**63 to 2**63 - 1)"
BIG_STORED = BIG_COMPARED + "; store it as text"
SMALL_STORED = SMALL_COMPARED + "; store it as text"
SURROGATE_STORED = (
    "the str holds '\\ud800' at position 1, which UTF-8 cannot encode (surrogates not allowed); "
    "SQLite stores text as UTF-8"
)


@pytest.fixture
def db(tmp_path):
    with connect(tmp_path / "values.sqlite3") as db:
        db.upgrade([SCHEMA])
        db.create("readings", {"name": "kept", "value": 1.5, "count": 1})
        yield db


def stored(db):
    """Every row, read with plain sqlite3 so nothing of the layer is involved."""
    with closing(sqlite3.connect(db.path)) as raw:
        return raw.execute("SELECT name, value, count FROM readings ORDER BY id").fetchall()


def stored_message(db, column, reason, row=None):
    where = "" if row is None else f" (create_many() row {row})"
    return f"cannot store the value for column {column!r} of table 'readings' in {db.label}{where}: {reason}"


def compared_message(db, column, reason):
    return f"cannot use the value of where[{column!r}] for table 'readings' in {db.label}: {reason}"


UNSTORABLE = [
    pytest.param("value", NAN, NAN_STORED, id="nan"),
    pytest.param("count", TOO_BIG, BIG_STORED, id="int-2**63"),
    pytest.param("count", TOO_SMALL, SMALL_STORED, id="int-below-2**63"),
    pytest.param("name", SURROGATE, SURROGATE_STORED, id="lone-surrogate"),
]


@pytest.mark.parametrize(("column", "value", "reason"), UNSTORABLE)
def test_create_refuses_a_value_sqlite_cannot_store(db, column, value, reason):
    row = {"name": "new", "value": 2.5, "count": 2, column: value}
    with pytest.raises(TypeError) as raised:
        db.create("readings", row)
    assert str(raised.value) == stored_message(db, column, reason)
    with pytest.raises(TypeError) as raised:
        with db.session():
            db.create("readings", {"name": "in the session"})
            db.create("readings", row)
    assert str(raised.value) == stored_message(db, column, reason)
    assert stored(db) == [("kept", 1.5, 1)]


@pytest.mark.parametrize(("column", "value", "reason"), UNSTORABLE)
def test_a_refused_create_inside_a_session_stores_nothing_of_itself(db, column, value, reason):
    with db.session():
        db.create("readings", {"name": "before"})
        with pytest.raises(TypeError, match=r"^cannot store the value for column"):
            db.create("readings", {"name": "refused", column: value})
        db.create("readings", {"name": "after"})
    assert [name for name, _, _ in stored(db)] == ["kept", "before", "after"]


@pytest.mark.parametrize(("column", "value", "reason"), UNSTORABLE)
def test_create_many_names_the_row_and_stores_none_of_the_rows(db, column, value, reason):
    rows = [{"name": f"r{n}", "value": float(n), "count": n} for n in range(6000)]  # more than one chunk
    rows[4500][column] = value
    with pytest.raises(TypeError) as raised:
        db.create_many("readings", rows)
    assert str(raised.value) == stored_message(db, column, reason, row=4500)
    assert stored(db) == [("kept", 1.5, 1)]


@pytest.mark.parametrize(("column", "value", "reason"), UNSTORABLE)
def test_create_with_callbacks_refuses_too(db, column, value, reason):
    seen = []
    db.on("after_create", "readings", seen.append)
    with pytest.raises(TypeError) as raised:
        db.create("readings", {"name": "new", column: value})
    assert str(raised.value) == stored_message(db, column, reason)
    with pytest.raises(TypeError) as raised:
        db.create_many("readings", [{"name": "a", column: None}, {"name": "b", column: value}])
    assert str(raised.value) == stored_message(db, column, reason, row=1)
    assert len(seen) == 1  # row 0's after_create, rolled back with it
    assert stored(db) == [("kept", 1.5, 1)]


@pytest.mark.parametrize(("column", "value", "reason"), UNSTORABLE)
def test_update_refuses_a_value_sqlite_cannot_store(db, column, value, reason):
    with pytest.raises(TypeError) as raised:
        db.update("readings", {"name": "kept"}, {column: value})
    assert str(raised.value) == stored_message(db, column, reason)
    assert stored(db) == [("kept", 1.5, 1)]


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        pytest.param("value", NAN, NAN_COMPARED, id="nan"),
        pytest.param("count", TOO_BIG, BIG_COMPARED, id="int-2**63"),
        pytest.param("count", TOO_SMALL, SMALL_COMPARED, id="int-below-2**63"),
        pytest.param("name", SURROGATE, SURROGATE_STORED, id="lone-surrogate"),
    ],
)
def test_where_refuses_a_value_sqlite_cannot_bind(db, column, value, reason):
    message = compared_message(db, column, reason)
    calls = [
        lambda: db.update("readings", {column: value}, {"name": "changed"}),
        lambda: db.update("readings", {"id": 1, column: (">=", value)}, {"name": "changed"}),
        lambda: db.delete("readings", {column: ("!=", value)}),
        lambda: db.read("readings", where={column: value}),
        lambda: db.read("readings", where={column: ("in", [1, value])}),
    ]
    for call in calls:
        with pytest.raises(TypeError) as raised:
            call()
        assert str(raised.value) == message
    assert stored(db) == [("kept", 1.5, 1)]


def test_the_edges_of_what_sqlite_stores_are_stored(db):
    edges = [
        {"name": "", "value": math.inf, "count": 2**63 - 1},
        {"name": "\U0001f600 \u00e9", "value": -math.inf, "count": -(2**63)},
        {"name": "\x00inside", "value": -0.0, "count": True},
    ]
    first = db.create("readings", edges[0])
    db.create_many("readings", edges[1:])
    assert db.update("readings", {"id": first}, {"count": -(2**63)}) == 1
    assert stored(db)[1:] == [
        ("", math.inf, -(2**63)),
        ("\U0001f600 \u00e9", -math.inf, -(2**63)),
        ("\x00inside", -0.0, 1),
    ]


def test_an_int_subclass_and_a_float_subclass_are_judged_like_their_base(db):
    class Size(enum.IntEnum):
        HUGE = 2**64

    class Measured(float):
        pass

    with pytest.raises(TypeError) as raised:
        db.create("readings", {"count": Size.HUGE})
    assert str(raised.value) == stored_message(
        db, "count", "the int 18446744073709551616 is outside SQLite's 64-bit integer range (-2**63 to 2**63 - 1); "
        "store it as text"
    )
    with pytest.raises(TypeError) as raised:
        db.create_many("readings", [{"value": Measured(2.0)}, {"value": Measured("nan")}])
    assert str(raised.value) == stored_message(db, "value", NAN_STORED, row=1)
    assert stored(db) == [("kept", 1.5, 1)]


def test_a_huge_int_is_named_by_its_size(db):
    with pytest.raises(TypeError) as raised:
        db.create("readings", {"count": 10**5000})
    assert str(raised.value) == stored_message(
        db, "count", "the int of 16610 bits is outside SQLite's 64-bit integer range (-2**63 to 2**63 - 1); "
        "store it as text"
    )


def test_a_type_sqlite3_does_not_know_names_its_column(db):
    message = "Error binding parameter 3: type 'dict' is not supported"
    with pytest.raises(TypeError) as raised:
        db.create("readings", {"name": "a", "value": 1.0, "count": {"not": "storable"}})
    assert str(raised.value) == stored_message(db, "count", message)
    with pytest.raises(TypeError) as raised:
        db.create_many("readings", [{"name": "a", "count": 1}, {"name": "b", "count": {"not": "storable"}}])
    # sqlite3 says which parameter failed, not in which row.
    assert str(raised.value) == stored_message(db, "count", message.replace("parameter 3", "parameter 2"))
    with pytest.raises(TypeError) as raised:
        db.update("readings", {"name": "kept"}, {"value": [1, 2]})
    assert str(raised.value) == stored_message(db, "value", "Error binding parameter 1: type 'list' is not supported")
    assert stored(db) == [("kept", 1.5, 1)]


def test_a_value_whose_comparison_raises_reaches_sqlite3_which_names_it(db):
    class Ambiguous:
        def __ne__(self, other):
            raise ValueError("the truth value is ambiguous")

    with pytest.raises(TypeError) as raised:
        db.create("readings", {"name": Ambiguous()})
    assert str(raised.value) == stored_message(
        db, "name", "Error binding parameter 1: type 'Ambiguous' is not supported"
    )
    with pytest.raises(TypeError) as raised:
        db.create_many("readings", [{"name": "fine"}, {"name": Ambiguous()}])
    assert str(raised.value) == stored_message(
        db, "name", "Error binding parameter 1: type 'Ambiguous' is not supported"
    )


def test_get_with_an_id_beyond_64_bits_finds_nothing(db):
    assert db.get("readings", 2**63) is None
    assert db.get("readings", -(2**63) - 1) is None


def test_a_limit_beyond_64_bits_is_refused(db):
    with pytest.raises(ValueError) as raised:
        db.read("readings", limit=2**63)
    assert str(raised.value) == "limit must be below 2**63 (SQL integers have 64 bits), not 9223372036854775808"
