"""read(): where operators, order_by and limit, and what they refuse: on each engine."""

from __future__ import annotations

import pytest

from taskcatalog.db import SchemaError

SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, tag TEXT)"
ROWS = [
    {"name": "apple", "qty": 3, "tag": "fruit"},
    {"name": "Avocado", "qty": 1, "tag": None},
    {"name": "banana", "qty": 7, "tag": "fruit"},
    {"name": "carrot", "qty": 3, "tag": "veg"},
    {"name": "x'; DROP TABLE items; --", "qty": 0, "tag": None},
]


@pytest.fixture
def db(engine):
    with engine.connect("where") as db:
        db.upgrade([engine.migration("shop", "0001_items", SCHEMA)])
        db.create_many("items", ROWS)
        yield db


def names(rows):
    return [row["name"] for row in rows]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"qty": 3}, ["apple", "carrot"]),
        ({"qty": 3, "tag": "veg"}, ["carrot"]),
        ({"tag": None}, ["Avocado", "x'; DROP TABLE items; --"]),
        ({"tag": ("=", None)}, ["Avocado", "x'; DROP TABLE items; --"]),
        ({"tag": ("!=", None)}, ["apple", "banana", "carrot"]),
        ({"qty": ("=", 7)}, ["banana"]),
        ({"qty": ("!=", 3)}, ["Avocado", "banana", "x'; DROP TABLE items; --"]),
        ({"qty": ("<", 3)}, ["Avocado", "x'; DROP TABLE items; --"]),
        ({"qty": ("<=", 3)}, ["apple", "Avocado", "carrot", "x'; DROP TABLE items; --"]),
        ({"qty": (">", 3)}, ["banana"]),
        ({"qty": (">=", 3)}, ["apple", "banana", "carrot"]),
        ({"name": ("in", ["apple", "carrot", "nothing"])}, ["apple", "carrot"]),
        ({"qty": ("in", (1, 7))}, ["Avocado", "banana"]),
        ({"qty": ("in", range(2))}, ["Avocado", "x'; DROP TABLE items; --"]),
        ({"name": ("in", [])}, []),
        ({"name": ("like", "a%")}, ["apple", "Avocado"]),  # LIKE ignores ASCII case (ILIKE on PostgreSQL)
        ({"name": ("LIKE", "%an%")}, ["banana"]),
        ({"name": ("like", "x'; drop _able%")}, ["x'; DROP TABLE items; --"]),  # _ is any one character
        ({"name": ("like", "%\\%")}, []),  # no escape character: a backslash is a backslash
        ({"name": ("like", "%%%")}, [r["name"] for r in ROWS]),
        ({"qty": ("IN", [0])}, ["x'; DROP TABLE items; --"]),
        ({"name": "x'; DROP TABLE items; --"}, ["x'; DROP TABLE items; --"]),
        ({}, [r["name"] for r in ROWS]),
        (None, [r["name"] for r in ROWS]),
    ],
)
def test_where_filters(db, where, expected):
    assert sorted(names(db.read("items", where=where)), key=str.lower) == sorted(expected, key=str.lower)


def test_where_with_an_empty_in_list_matches_nothing_in_update_and_delete_too(db):
    assert db.update("items", {"name": ("in", [])}, {"qty": 0}) == 0
    assert db.delete("items", {"name": ("in", [])}) == 0
    assert len(db.read("items")) == 5


def test_order_by_a_column_descending_and_several(db):
    assert names(db.read("items", order_by="name")) == sorted(r["name"] for r in ROWS)
    assert [r["qty"] for r in db.read("items", order_by="-qty")] == [7, 3, 3, 1, 0]
    assert names(db.read("items", order_by=["-qty", "name"], limit=3)) == ["banana", "apple", "carrot"]
    assert names(db.read("items", order_by=("qty", "-name"), limit=2)) == ["x'; DROP TABLE items; --", "Avocado"]
    assert len(db.read("items", order_by=[])) == 5


def test_limit(db):
    assert names(db.read("items", order_by="id", limit=2)) == ["apple", "Avocado"]
    assert db.read("items", limit=0) == []
    assert len(db.read("items", limit=100)) == 5


@pytest.mark.parametrize("limit", [-1, 1.5, "2", True])
def test_a_bad_limit_is_refused(db, limit):
    with pytest.raises(ValueError, match=rf"limit must be a non-negative int, not {limit!r}"):
        db.read("items", limit=limit)


@pytest.mark.parametrize(
    ("where", "error", "message"),
    [
        ({"qty": ("~", 1)}, ValueError, r"where\['qty'\]: unknown operator '~'; operators are: = != < <= > >= in like"),
        ({"qty": ("between", (1, 3))}, ValueError, r"unknown operator 'between'"),
        ({"qty": ("<", None)}, ValueError, r"where\['qty'\]: '<' with None matches nothing; use None or \('!=', None\)"),
        ({"name": ("like", None)}, ValueError, r"'like' with None matches nothing"),
        ({"qty": (1, 2, 3)}, ValueError, r"where\['qty'\] must be a value or an \(operator, value\) pair, not \(1, 2, 3\)"),
        ({"qty": (3, ">")}, ValueError, r"must be a value or an \(operator, value\) pair"),
        ({"qty": [1, 2]}, TypeError, r"where\['qty'\] is a list; use \('in', \[\.\.\.\]\) to match any of several values"),
        ({"name": ("in", "apple")}, TypeError, r"where\['name'\]: 'in' needs a list of values, not str"),
        ({"name": ("in", 3)}, TypeError, r"'in' needs a list of values, not int"),
        ("qty = 3", TypeError, r"where must be a mapping of column to value, not str"),
        ({"nope": 1}, SchemaError, r"no column 'nope' in table 'items' of .*; columns: 'id', 'name', 'qty', 'tag'"),
        ({"qty; --": 1}, SchemaError, r"no column 'qty; --' in table 'items'"),
    ],
)
def test_bad_filters_are_refused_clearly(db, where, error, message):
    with pytest.raises(error, match=message):
        db.read("items", where=where)


@pytest.mark.parametrize("values", [[None], [3, None], (None, None)])
def test_in_with_none_is_refused_as_it_never_matches_null(db, values):
    message = (
        "where['tag']: 'in' with None in the list never matches NULL (SQL's IN compares with =); "
        "use None or ('!=', None) to match on NULL"
    )
    calls = [
        lambda: db.read("items", where={"tag": ("in", values)}),
        lambda: db.update("items", {"tag": ("in", values)}, {"qty": 0}),
        lambda: db.delete("items", {"tag": ("IN", values)}),
    ]
    for call in calls:
        with pytest.raises(ValueError) as raised:
            call()
        assert str(raised.value) == message
    assert names(db.read("items", where={"qty": 0})) == ["x'; DROP TABLE items; --"]  # nothing was changed


@pytest.mark.parametrize(
    ("order_by", "error", "message"),
    [
        ("nope", SchemaError, r"no column 'nope' in table 'items'"),
        ("-nope", SchemaError, r"no column 'nope' in table 'items'"),
        ("name DESC", SchemaError, r"no column 'name DESC' in table 'items'"),
        (["name", 3], SchemaError, r"a column name for table 'items' must be a str, not int: 3"),
        (3, TypeError, r"order_by must be a column name or a list of them, not int"),
    ],
)
def test_bad_order_by_is_refused_clearly(db, order_by, error, message):
    with pytest.raises(error, match=message):
        db.read("items", order_by=order_by)


def test_where_nulls_sort(db, engine):
    # SQLite sorts NULL before every value; PostgreSQL after (ascending),
    # so a descending order puts them first there.
    tags = [r["tag"] for r in db.read("items", order_by=["tag", "id"])]
    if engine.postgres:
        assert tags == ["fruit", "fruit", "veg", None, None]
    else:
        assert tags == [None, None, "fruit", "fruit", "veg"]
    descending = [r["tag"] for r in db.read("items", order_by="-tag")]
    assert descending == ([None, None, "veg", "fruit", "fruit"] if engine.postgres else ["veg", "fruit", "fruit", None, None])
