"""create / create_many / get / read / update / delete round trips, hostile input included: on each engine."""

from __future__ import annotations

import re
import sqlite3
from types import MappingProxyType

import pytest

from taskcatalog.db import Migration, SchemaError, connect
from taskcatalog.db.sqlite import schema as sqlite_schema

ORDERS = "CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT UNIQUE, qty INTEGER, note TEXT, data BLOB)"


def orders(engine):
    return engine.migration("shop", "0001_orders", ORDERS)


@pytest.fixture
def db(engine):
    with engine.connect("crud") as db:
        db.upgrade([orders(engine)])
        yield db


HOSTILE_VALUES = [
    "it's",
    'say "hi"',
    "'); DROP TABLE orders; --",
    "a;b;c",
    "50% off %s %(x)s",
    "back\\slash\ttab\nnewline",
    "ünïcødé ✓ 中文 🚀",
    "x" * 1_000_000,
    "",
]


@pytest.mark.parametrize("text", HOSTILE_VALUES, ids=lambda v: repr(v[:20]))
def test_hostile_text_round_trips_exactly(db, text):
    # sku is UNIQUE, so indexed: a PostgreSQL index entry holds at most about
    # 2.7 kB, so the megabyte goes to the unindexed note alone.
    sku = text if len(text) < 1000 else "long"
    row_id = db.create("orders", {"sku": sku, "note": text})
    assert db.get("orders", row_id) == {"id": row_id, "sku": sku, "qty": None, "note": text, "data": None}
    assert db.read("orders", where={"note": text}) == [db.get("orders", row_id)]
    assert [r["id"] for r in db.read("orders")] == [row_id]  # the table is still there


def test_a_nul_character_in_text(db, engine):
    # SQLite keeps a str with NUL characters whole; PostgreSQL's text cannot
    # hold one, and psycopg refuses to send it: a TypeError naming the
    # column, nothing stored (bytes in a bytea column hold anything).
    text = "nul\x00inside"
    if not engine.postgres:
        row_id = db.create("orders", {"sku": text})
        assert db.get("orders", row_id)["sku"] == text
        return
    message = (
        f"cannot store the value for column 'sku' of table 'orders' in {db.label}: the str holds a NUL character "
        f"at position 3, which PostgreSQL text cannot hold; remove it, or store bytes in a bytea column"
    )
    for call in (lambda: db.create("orders", {"sku": text}), lambda: db.update("orders", {"id": 1}, {"sku": text})):
        with pytest.raises(TypeError) as raised:
            call()
        assert str(raised.value) == message
    with pytest.raises(TypeError) as raised:
        db.create_many("orders", [{"sku": "fine"}, {"sku": text}])
    assert str(raised.value) == message.replace(": the str", " (create_many() row 1): the str")
    assert db.read("orders") == []
    row_id = db.create("orders", {"data": text.encode()})
    assert db.get("orders", row_id)["data"] == b"nul\x00inside"


@pytest.mark.parametrize(
    ("column", "value"),
    [("data", b""), ("data", b"\x00\xff\x00"), ("data", bytes(range(256)) * 100), ("qty", 2**62), ("qty", -1),
     ("qty", None), ("data", None)],
)
def test_other_values_round_trip(db, column, value):
    row_id = db.create("orders", {column: value})
    assert db.get("orders", row_id)[column] == value


def test_values_of_another_type_than_the_column(db, engine):
    # SQLite's columns take any value (type affinity); PostgreSQL converts a
    # value to the column's type or refuses it, with its own error, unchanged.
    if not engine.postgres:
        row_id = db.create("orders", {"qty": 3.5})
        assert db.get("orders", row_id)["qty"] == 3.5
        row_id = db.create("orders", {"qty": "many"})
        assert db.get("orders", row_id)["qty"] == "many"
        return
    import psycopg

    row_id = db.create("orders", {"qty": 3.5})
    assert db.get("orders", row_id)["qty"] == 4  # rounded to the bigint column
    with pytest.raises(psycopg.errors.InvalidTextRepresentation, match=r'^invalid input syntax for type bigint: "many"'):
        db.create("orders", {"qty": "many"})
    assert [r["qty"] for r in db.read("orders")] == [4]


def test_create_returns_the_rowid_and_get_finds_it(db):
    first = db.create("orders", {"sku": "A-1", "qty": 2})
    second = db.create("orders", {"qty": 5, "sku": "B-2"})  # column order does not matter
    assert second == first + 1
    assert db.get("orders", second) == {"id": second, "sku": "B-2", "qty": 5, "note": None, "data": None}
    assert db.get("orders", 999) is None


def test_create_with_no_values_uses_the_defaults(db):
    row_id = db.create("orders", {})
    assert db.get("orders", row_id) == {"id": row_id, "sku": None, "qty": None, "note": None, "data": None}


def test_create_accepts_any_mapping(db):
    row_id = db.create("orders", MappingProxyType({"sku": "M-1"}))
    assert db.get("orders", row_id)["sku"] == "M-1"


def test_create_many_inserts_every_row_and_returns_the_count(db):
    rows = [{"sku": f"S-{i}", "qty": i} for i in range(500)]
    assert db.create_many("orders", rows) == 500
    assert db.create_many("orders", ({"sku": f"G-{i}"} for i in range(3))) == 3  # any iterable
    assert db.create_many("orders", []) == 0
    assert db.create_many("orders", [{}, {}]) == 2  # rows of defaults only
    assert [r["qty"] for r in db.read("orders", where={"sku": ("like", "S-%")}, order_by="id")] == list(range(500))
    assert len(db.read("orders", where={"sku": None})) == 2


def test_create_many_with_rows_of_different_columns_inserts_nothing(db):
    rows = [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}, {"sku": "c", "note": "x"}]
    with pytest.raises(ValueError, match=r"row 2 for 'orders' has the columns \['note', 'sku'\].*same columns"):
        db.create_many("orders", rows)
    rows = [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2, "note": "extra"}]
    with pytest.raises(ValueError, match=r"row 1 for 'orders' has the columns"):
        db.create_many("orders", rows)
    assert db.read("orders") == []


def test_create_many_with_an_unknown_column_in_a_later_row_is_a_schema_error(db):
    rows = [{"sku": "a"}, {"skew": "b"}]
    with pytest.raises(SchemaError, match=r"no column 'skew' in table 'orders'.*columns: 'id', 'sku'"):
        db.create_many("orders", rows)
    assert db.read("orders") == []


def test_create_many_rejects_rows_that_are_not_mappings(db):
    with pytest.raises(TypeError, match=r"create_many\(\) row 1 for 'orders' must be a mapping.*not tuple"):
        db.create_many("orders", [{"sku": "a", "qty": 1}, ("b", 2)])
    with pytest.raises(TypeError, match="rows must be an iterable of mappings, not dict"):
        db.create_many("orders", {"sku": "a"})
    with pytest.raises(TypeError, match="rows must be an iterable of mappings, not str"):
        db.create_many("orders", "rows")
    assert db.read("orders") == []


def test_create_many_is_all_or_nothing_on_a_constraint_error(db, engine):
    db.create("orders", {"sku": "dup"})
    with pytest.raises(engine.integrity_error, match=engine.unique_violation("orders", "sku")):
        db.create_many("orders", [{"sku": "new-1"}, {"sku": "dup"}, {"sku": "new-2"}])
    assert [r["sku"] for r in db.read("orders")] == ["dup"]


def test_update_and_delete_return_the_rows_they_touched(db):
    db.create_many("orders", [{"sku": f"S-{i}", "qty": i % 3} for i in range(9)])
    assert db.update("orders", {"qty": 0}, {"note": "zero"}) == 3
    assert db.update("orders", {"qty": 99}, {"note": "none"}) == 0
    assert sorted(r["sku"] for r in db.read("orders", where={"note": "zero"})) == ["S-0", "S-3", "S-6"]
    assert db.delete("orders", {"qty": ("in", [1, 2])}) == 6
    assert db.delete("orders", {"qty": ("in", [1, 2])}) == 0
    assert len(db.read("orders")) == 3


@pytest.mark.parametrize("where", [{}, MappingProxyType({})])
def test_update_and_delete_refuse_an_empty_where(db, where):
    db.create("orders", {"sku": "keep"})
    with pytest.raises(ValueError, match=r"update\(\) on 'orders' with an empty where would touch every row.*wipe\(\)"):
        db.update("orders", where, {"qty": 1})
    with pytest.raises(ValueError, match=r"delete\(\) on 'orders' with an empty where would touch every row.*wipe\(\)"):
        db.delete("orders", where)
    assert db.read("orders", where={"sku": "keep"})[0]["qty"] is None


def test_update_needs_values(db):
    with pytest.raises(ValueError, match=r"update\(\) on 'orders' needs at least one column to set"):
        db.update("orders", {"id": 1}, {})


HOSTILE_NAMES = [
    ("orders; DROP TABLE x", r"no table 'orders; DROP TABLE x' in .*; tables: 'orders'"),
    ('a"b', r"""no table 'a"b' in .*; tables: 'orders'"""),
    ("ORDERS", r"no table 'ORDERS'"),
    ("", r"a table name must not be empty"),
    ("or\x00ders", r"a table name must not contain NUL characters"),
    (42, r"a table name must be a str, not int: 42"),
    (None, r"a table name must be a str, not NoneType"),
    (["orders"], r"a table name must be a str, not list"),
    ("taskcatalog_migrations", r"no table 'taskcatalog_migrations'"),
]


@pytest.mark.parametrize(("table", "message"), HOSTILE_NAMES)
def test_hostile_table_names_are_schema_errors(db, engine, table, message):
    calls = [
        lambda: db.create(table, {"sku": "x"}),
        lambda: db.create_many(table, [{"sku": "x"}]),
        lambda: db.read(table),
        lambda: db.get(table, 1),
        lambda: db.update(table, {"id": 1}, {"qty": 1}),
        lambda: db.delete(table, {"id": 1}),
    ]
    for call in calls:
        with pytest.raises(SchemaError, match=message):
            call()
    with db.session():
        with pytest.raises(SchemaError, match=message):
            db.create(table, {"sku": "x"})
    assert engine.tables("crud") == ["orders", "taskcatalog_migrations"]


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("sku; DROP TABLE orders", r"no column 'sku; DROP TABLE orders' in table 'orders' of .*; columns: 'id', 'sku', 'qty', 'note', 'data'"),
        ('sku"', r"""no column 'sku"' in table 'orders'"""),
        ("", r"a column name for table 'orders' must not be empty"),
        (7, r"a column name for table 'orders' must be a str, not int: 7"),
    ],
)
def test_hostile_column_names_are_schema_errors(db, column, message):
    with pytest.raises(SchemaError, match=message):
        db.create("orders", {column: "x"})
    with pytest.raises(SchemaError, match=message):
        db.update("orders", {"id": 1}, {column: "x"})
    with pytest.raises(SchemaError, match=message):
        db.update("orders", {column: 1}, {"qty": 1})
    with pytest.raises(SchemaError, match=message):
        db.read("orders", where={column: 1})
    with pytest.raises(SchemaError, match=message):
        db.read("orders", order_by=[column])
    assert db.read("orders") == []


def test_values_that_are_not_mappings_are_type_errors(db):
    with pytest.raises(TypeError, match=r"create\(\) values for 'orders' must be a mapping of column to value, not list"):
        db.create("orders", ["sku", "qty"])
    with pytest.raises(TypeError, match=r"update\(\) values for 'orders' must be a mapping.*not str"):
        db.update("orders", {"id": 1}, "qty=1")
    with pytest.raises(TypeError, match=r"update\(\) where must be a mapping of column to value, not str"):
        db.update("orders", "id = 1", {"qty": 1})
    with pytest.raises(TypeError, match=r"get\(\) id must be an int, not str"):
        db.get("orders", "1 OR 1=1")


def test_odd_but_legal_names_are_quoted(engine):
    # '%' in a name too: psycopg reads '%' in SQL text as a placeholder.
    with engine.connect("odd") as db:
        db.upgrade([engine.migration("odd", "0001_odd", (
            'CREATE TABLE "order" (id INTEGER PRIMARY KEY, "select" TEXT, "a""b" INTEGER, "group by" TEXT, "50%s off" TEXT)'
        ))])
        row = {"select": "s", 'a"b': 1, "group by": "g", "50%s off": "%"}
        row_id = db.create("order", row)
        assert db.get("order", row_id) == {"id": row_id, **row}
        assert db.read("order", where={'a"b': 1, "50%s off": "%"}, order_by=["-select", "group by"]) == [db.get("order", row_id)]
        assert db.update("order", {"select": "s"}, {'a"b': 2}) == 1
        assert db.create_many("order", [{"50%s off": "a"}, {"50%s off": "b"}]) == 2
        assert db.delete("order", {"50%s off": ("in", ["a", "b"])}) == 2
        assert db.wipe() == {"order": 1}


# sqlite_master.sql keeps a comment between the column list and a table
# option (STRICT, SQLite >= 3.37): text that must not pass for WITHOUT ROWID.
TRICKY_OPTIONS = " /* ) WITHOUT ROWID */ STRICT" if sqlite3.sqlite_version_info >= (3, 37) else ""
SQLITE_KINDS = Migration("shop", "0002_kinds", f"""
    CREATE VIEW big AS SELECT id, sku, qty FROM orders WHERE qty > 5;
    CREATE TABLE stock (sku TEXT PRIMARY KEY, count INTEGER) WITHOUT ROWID;
    CREATE TABLE "odd" ("rowid" TEXT, value INTEGER);
    CREATE TABLE hidden (rowid TEXT, _rowid_ TEXT, oid TEXT);
    CREATE TABLE tricky (
        note TEXT DEFAULT 'WITHOUT ROWID (not really)'  -- WITHOUT ROWID ) in a comment
    ){TRICKY_OPTIONS};
""")
# A table whose rows have no id: on PostgreSQL, one without a single-column
# integer primary key (there is no rowid).
POSTGRES_KINDS = """
    CREATE VIEW big AS SELECT id, sku, qty FROM orders WHERE qty > 5;
    CREATE TABLE stock (sku TEXT PRIMARY KEY, count INTEGER);
"""


@pytest.fixture
def kinds(engine):
    """A database with a view and a table whose rows have no id, on each engine."""
    with engine.connect("kinds") as db:
        kinds = SQLITE_KINDS if not engine.postgres else engine.migration("shop", "0002_kinds", POSTGRES_KINDS)
        db.upgrade([orders(engine), kinds])
        db.create_many("orders", [{"sku": "s", "qty": 1}, {"sku": "b", "qty": 9}])
        yield db


@pytest.fixture(params=["table_list", "sqlite_master"])
def sqlite_kinds(request, tmp_path, monkeypatch):
    """SQLite only (rowid aliases, WITHOUT ROWID, the text of CREATE TABLE): the schema read
    through PRAGMA table_list (SQLite >= 3.37) or through the fallback that parses sqlite_master.sql."""
    if request.param == "sqlite_master":
        monkeypatch.setattr(sqlite_schema, "_HAS_TABLE_LIST", False)
    elif not sqlite_schema._HAS_TABLE_LIST:
        pytest.skip(f"SQLite {sqlite3.sqlite_version} has no PRAGMA table_list")
    with connect(tmp_path / "kinds.sqlite3") as db:
        db.upgrade([Migration("shop", "0001_orders", ORDERS), SQLITE_KINDS])
        db.create_many("orders", [{"sku": "s", "qty": 1}, {"sku": "b", "qty": 9}])
        yield db


def test_views_can_be_read(kinds):
    assert kinds.read("big") == [{"id": 2, "sku": "b", "qty": 9}]
    assert kinds.read("big", where={"sku": "b"}, order_by="-qty", limit=1) == [{"id": 2, "sku": "b", "qty": 9}]


def test_get_refuses_a_view_saying_why(kinds):
    with pytest.raises(SchemaError) as raised:
        kinds.get("big", 2)
    assert str(raised.value) == (
        f"get() needs row ids, and 'big' in {kinds.label} is a view, whose rows have no row id: "
        f"find its rows with read(where=...)"
    )
    assert raised.value.path == kinds.label


@pytest.mark.parametrize(
    ("verb", "call"),
    [
        ("create", lambda db: db.create("big", {"sku": "x", "qty": 7})),
        ("create_many", lambda db: db.create_many("big", [{"sku": "x", "qty": 7}])),
        ("update", lambda db: db.update("big", {"sku": "b"}, {"qty": 8})),
        ("delete", lambda db: db.delete("big", {"sku": "b"})),
    ],
)
def test_writes_to_a_view_are_refused_saying_why(kinds, verb, call):
    for attempt in ("outside a session", "inside one"):
        with pytest.raises(SchemaError) as raised:
            if attempt == "inside one":
                with kinds.session():
                    call(kinds)
            else:
                call(kinds)
        assert str(raised.value) == (
            f"{verb}() on 'big' in {kinds.label}: it is a view, and views are read-only through this layer; "
            f"write to the tables it reads from"
        )
    assert kinds.read("orders", order_by="id") == [{"id": 1, "sku": "s", "qty": 1, "note": None, "data": None},
                                                   {"id": 2, "sku": "b", "qty": 9, "note": None, "data": None}]


def test_a_table_without_row_ids_refuses_get_and_create_saying_why(kinds, engine):
    with pytest.raises(SchemaError) as raised:
        kinds.get("stock", 1)
    assert str(raised.value) == (
        f"get() needs row ids, and 'stock' in {kinds.label} {engine.no_id()}: find its rows with read(where=...)"
    )
    kinds.create("orders", {"sku": "sets lastrowid"})  # create() would have returned this stale id
    with pytest.raises(SchemaError) as raised:
        kinds.create("stock", {"sku": "A-1", "count": 3})
    assert str(raised.value) == (
        f"create() needs row ids, and 'stock' in {kinds.label} {engine.no_id()}: "
        f"insert with create_many('stock', [row]), which returns a count"
    )
    assert kinds.read("stock") == []


def test_a_table_without_row_ids_takes_every_other_call(kinds):
    assert kinds.create_many("stock", [{"sku": "A-1", "count": 3}, {"sku": "B-2", "count": 0}]) == 2
    assert kinds.update("stock", {"sku": "A-1"}, {"count": 4}) == 1
    assert kinds.delete("stock", {"count": 0}) == 1
    assert kinds.read("stock") == [{"sku": "A-1", "count": 4}]
    seen = []
    kinds.on("after_create", "stock", lambda event: seen.append((event.values, event.result)))
    assert kinds.create_many("stock", [{"sku": "C-3", "count": 1}]) == 1
    assert seen == [({"sku": "C-3", "count": 1}, None)]  # no row id to report


def test_a_without_rowid_table_is_found_by_either_schema_reader(sqlite_kinds):
    # SQLite only: PRAGMA table_list, or the text of CREATE TABLE on SQLite < 3.37.
    with pytest.raises(SchemaError, match=r"'stock' in .* is a WITHOUT ROWID table"):
        sqlite_kinds.get("stock", 1)
    with pytest.raises(SchemaError, match=r"'big' in .* is a view"):
        sqlite_kinds.get("big", 2)


def test_a_column_named_rowid_does_not_hide_the_row_id(sqlite_kinds):
    # SQLite only: PostgreSQL has no rowid to hide.
    row_id = sqlite_kinds.create("odd", {"rowid": "mine", "value": 1})
    assert sqlite_kinds.get("odd", row_id) == {"rowid": "mine", "value": 1}
    assert sqlite_kinds.get("odd", row_id + 1) is None


def test_columns_that_take_every_rowid_alias_leave_get_nothing_to_match(sqlite_kinds):
    # SQLite only: PostgreSQL has no rowid to hide.
    row_id = sqlite_kinds.create("hidden", {"rowid": "r", "_rowid_": "u", "oid": "o"})  # the row still has its id
    assert row_id == 1
    with pytest.raises(SchemaError) as raised:
        sqlite_kinds.get("hidden", row_id)
    assert str(raised.value) == (
        f"get() needs row ids, and 'hidden' in {sqlite_kinds.label} has columns named rowid, _rowid_ and oid, "
        f"which hide the row id: find its rows with read(where=...)"
    )


def test_without_rowid_in_a_default_or_a_comment_is_not_the_table_option(sqlite_kinds):
    # SQLite only: the fallback reads the text of CREATE TABLE.
    row_id = sqlite_kinds.create("tricky", {})
    assert sqlite_kinds.get("tricky", row_id) == {"note": "WITHOUT ROWID (not really)"}


def test_a_table_another_connection_created_is_found_without_reopening(engine):
    with engine.connect("shared") as first, engine.connect("shared") as second:
        first.upgrade([orders(engine)])
        assert first.read("orders") == []  # the schema is now cached in `first`
        second.upgrade([engine.migration("shop", "0002_items", "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")])
        first.create("items", {"name": "new"})
        assert first.read("items", order_by="id") == [{"id": 1, "name": "new"}]


def test_a_dropped_column_under_a_cached_statement_is_a_schema_error(engine):
    with engine.connect("drift") as first, engine.connect("drift") as second:
        first.upgrade([orders(engine)])
        first.create("orders", {"sku": "a", "note": "n"})  # caches the prepared INSERT
        second.upgrade([Migration("shop", "0002_drop_note", "ALTER TABLE orders DROP COLUMN note")])
        why = 'column "note" of relation "orders" does not exist' if engine.postgres else "table orders has no column named note"
        with pytest.raises(SchemaError, match=rf"^{why} in {re.escape(first.label)} \(the schema has changed\)$"):
            first.create("orders", {"sku": "b", "note": "n"})
        with pytest.raises(SchemaError, match=r"no column 'note' in table 'orders'"):
            first.create("orders", {"sku": "b", "note": "n"})
        assert first.create("orders", {"sku": "b"}) == 2


def test_the_ids_of_rolled_back_rows(db, engine):
    # SQLite hands out the largest id + 1, so a rolled-back row's id comes
    # back; a PostgreSQL sequence never goes back (it is not transactional).
    first = db.create("orders", {"sku": "kept"})
    with pytest.raises(RuntimeError):
        with db.session():
            db.create("orders", {"sku": "rolled back"})
            raise RuntimeError("undo")
    assert db.create("orders", {"sku": "next"}) == first + (2 if engine.postgres else 1)
