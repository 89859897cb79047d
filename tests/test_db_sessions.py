"""Sessions (transactions and savepoints) and CRUD callbacks with their rollbacks: on each engine.

What happens after an error the engine raised inside a session differs:
SQLite undoes the statement alone (some errors end its whole transaction),
PostgreSQL aborts the transaction. Those tests say which engine they are about.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from contextlib import closing

import pytest

from taskcatalog.db import CrudEvent, DatabaseError, Migration, SchemaError, connect

SCHEMA = [
    ("shop", "0001_orders", "CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT UNIQUE, qty INTEGER)"),
    ("shop", "0002_audit", "CREATE TABLE audit (id INTEGER PRIMARY KEY, event TEXT, row_id INTEGER)"),
]


def schema(engine):
    return [engine.migration(*migration) for migration in SCHEMA]


@pytest.fixture
def db(engine):
    with engine.connect("sessions") as db:
        db.upgrade(schema(engine))
        yield db


@pytest.fixture
def sqlite_db(tmp_path):
    with connect(tmp_path / "sessions.sqlite3") as db:
        db.upgrade([Migration(*migration) for migration in SCHEMA])
        yield db


def skus(db):
    return [row["sku"] for row in db.read("orders", order_by="id")]


class Boom(Exception):
    pass


def raising(error):
    """A callback that raises ``error`` (the very object, so tests can check identity)."""

    def callback(change):
        raise error

    return callback


# ---------------------------------------------------------------- sessions


def test_a_session_commits_when_the_block_ends(db):
    with db.session() as same:
        assert same is db
        db.create("orders", {"sku": "a"})
        db.update("orders", {"sku": "a"}, {"qty": 1})
        db.create_many("orders", [{"sku": "b"}, {"sku": "c"}])
        db.delete("orders", {"sku": "c"})
    assert skus(db) == ["a", "b"]


def test_a_failing_session_rolls_everything_back(db):
    db.create("orders", {"sku": "before"})
    with pytest.raises(Boom):
        with db.session():
            db.create("orders", {"sku": "a"})
            with db.session():
                db.create("orders", {"sku": "inner"})
            db.update("orders", {"sku": "before"}, {"qty": 9})
            raise Boom
    assert skus(db) == ["before"]
    assert db.read("orders")[0]["qty"] is None


def test_a_caught_failure_in_a_nested_session_undoes_only_the_savepoint(db):
    with db.session():
        db.create("orders", {"sku": "outer-1"})
        with pytest.raises(Boom):
            with db.session():
                db.create("orders", {"sku": "inner"})
                with db.session():
                    db.create("orders", {"sku": "innermost"})
                raise Boom
        with db.session():
            db.create("orders", {"sku": "inner-kept"})
        db.create("orders", {"sku": "outer-2"})
    assert skus(db) == ["outer-1", "inner-kept", "outer-2"]


def test_work_in_a_session_is_invisible_to_other_threads_until_commit(db):
    seen = []

    def count():
        seen.append(len(db.read("orders")))

    with db.session():
        db.create("orders", {"sku": "pending"})
        assert len(db.read("orders")) == 1  # the session sees its own work
        reader = threading.Thread(target=count)
        reader.start()
        reader.join()
    count()
    assert seen == [0, 1]


def test_sessions_of_different_threads_are_independent(db):
    errors = []

    def other():
        try:
            with db.session():
                db.create("orders", {"sku": "other"})
                raise Boom
        except BaseException as exc:
            errors.append(exc)

    with db.session():
        db.create("orders", {"sku": "main"})
    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert [type(e) for e in errors] == [Boom]
    assert skus(db) == ["main"]


# ---------------------------------------------------------------- callbacks


def test_callbacks_receive_one_event_for_each_change(db):
    events = []
    for name in ("before_create", "after_create", "before_update", "after_update", "before_delete", "after_delete"):
        db.on(name, "orders", events.append)
    row_id = db.create("orders", {"sku": "a", "qty": 1})
    db.update("orders", {"id": row_id}, {"qty": 2})
    db.delete("orders", {"id": row_id})
    assert [(e.event, e.table, e.values, e.where, e.result) for e in events] == [
        ("before_create", "orders", {"sku": "a", "qty": 1}, None, None),
        ("after_create", "orders", {"sku": "a", "qty": 1}, None, row_id),
        ("before_update", "orders", {"qty": 2}, {"id": row_id}, None),
        ("after_update", "orders", {"qty": 2}, {"id": row_id}, 1),
        ("before_delete", "orders", None, {"id": row_id}, None),
        ("after_delete", "orders", None, {"id": row_id}, 1),
    ]
    assert all(isinstance(e, CrudEvent) and e.db is db for e in events)


def test_callbacks_fire_only_for_their_table_and_in_registration_order(db):
    calls = []
    db.on("after_create", "orders", lambda e: calls.append("first"))
    db.on("after_create", "orders", lambda e: calls.append("second"))
    db.on("after_create", "audit", lambda e: calls.append("audit"))
    db.create("orders", {"sku": "a"})
    assert calls == ["first", "second"]


def test_before_callbacks_may_change_what_is_written(db):
    def stamp(event):
        event.values["qty"] = 42

    db.on("before_create", "orders", stamp)
    db.on("before_update", "orders", stamp)
    row_id = db.create("orders", {"sku": "a"})
    assert db.get("orders", row_id)["qty"] == 42
    db.update("orders", {"id": row_id}, {"sku": "b"})
    assert db.get("orders", row_id) == {"id": row_id, "sku": "b", "qty": 42}


def test_a_callback_may_write_in_the_same_transaction(db):
    db.on("after_create", "orders", lambda e: e.db.create("audit", {"event": e.event, "row_id": e.result}))
    with pytest.raises(Boom):
        with db.session():
            db.create("orders", {"sku": "gone"})
            raise Boom
    assert db.read("audit") == []
    row_id = db.create("orders", {"sku": "kept"})
    # (ids: PostgreSQL does not give back the ids of rolled-back rows, SQLite does)
    assert [(r["event"], r["row_id"]) for r in db.read("audit")] == [("after_create", row_id)]


@pytest.mark.parametrize("event", ["before_create", "after_create"])
def test_a_raising_create_callback_rolls_back_the_session_and_reaches_the_caller_unchanged(db, event):
    boom = Boom("no")
    db.create("orders", {"sku": "committed"})
    db.on(event, "orders", raising(boom))
    with pytest.raises(Boom) as raised:
        with db.session():
            db.update("orders", {"sku": "committed"}, {"qty": 5})
            db.create("orders", {"sku": "refused"})
    assert raised.value is boom
    assert db.read("orders") == [{"id": 1, "sku": "committed", "qty": None}]
    with pytest.raises(Boom) as raised:
        db.create("orders", {"sku": "refused-alone"})  # a write outside a session: same rule
    assert raised.value is boom
    assert skus(db) == ["committed"]


@pytest.mark.parametrize("event", ["before_update", "after_update", "before_delete", "after_delete"])
def test_a_raising_update_or_delete_callback_rolls_back(db, event):
    boom = Boom(event)
    db.create_many("orders", [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}])
    db.on(event, "orders", raising(boom))
    with pytest.raises(Boom) as raised:
        with db.session():
            db.create("orders", {"sku": "c"})
            if "update" in event:
                db.update("orders", {"sku": "a"}, {"qty": 10})
            else:
                db.delete("orders", {"sku": "a"})
    assert raised.value is boom
    assert db.read("orders", order_by="id") == [
        {"id": 1, "sku": "a", "qty": 1},
        {"id": 2, "sku": "b", "qty": 2},
    ]


def test_a_callback_error_caught_inside_the_session_still_rolls_back_all_of_it(db):
    boom = Boom("late")
    db.on("after_create", "audit", raising(boom))
    with pytest.raises(Boom) as raised:
        with db.session():
            db.create("orders", {"sku": "a"})
            with db.session():
                try:
                    db.create("audit", {"event": "x"})
                except Boom:
                    pass  # swallowed here, but the session is doomed
            with pytest.raises(DatabaseError, match=r"will be rolled back: a callback raised Boom: late") as doomed:
                db.create("orders", {"sku": "after"})
            assert doomed.value.__cause__ is boom
            with pytest.raises(DatabaseError, match=r"will be rolled back: a callback raised Boom: late; leave the session$"):
                db.session().__enter__()
            with pytest.raises(DatabaseError, match=r"will be rolled back: a callback raised Boom: late; leave the session$"):
                db.read("orders")  # reads too: they would show work that is bound to vanish
    assert raised.value is boom  # raised again when the session ends
    assert db.read("orders") == [] and db.read("audit") == []
    db.create("orders", {"sku": "next"})  # the next session starts clean
    assert skus(db) == ["next"]


def test_create_many_fires_callbacks_per_row_and_is_all_or_nothing(db):
    seen = []

    def third_fails(change):
        seen.append(change.result)
        if len(seen) == 3:
            raise Boom("row 3")

    db.on("after_create", "orders", third_fails)
    with pytest.raises(Boom, match="row 3"):
        db.create_many("orders", [{"sku": f"s{i}"} for i in range(5)])
    assert seen == [1, 2, 3]
    assert db.read("orders") == []
    seen.clear()
    seen.extend([None] * 10)  # no more failures
    assert db.create_many("orders", [{"sku": "a"}, {"sku": "b"}]) == 2
    assert skus(db) == ["a", "b"]


def test_create_many_failing_inside_a_session_keeps_the_rest_of_the_session(db):
    with db.session():
        db.create("orders", {"sku": "kept"})
        with pytest.raises(ValueError, match="every row needs the same columns"):
            db.create_many("orders", [{"sku": "x"}, {"qty": 1}])
    assert skus(db) == ["kept"]


def emptying(part):
    """A before_* callback that removes everything from the event's ``values`` or ``where``."""

    def callback(event):
        getattr(event, part).clear()

    return callback


EMPTIED = [
    pytest.param(
        "before_update", "values", lambda db: db.update("orders", {"sku": "a"}, {"qty": 5}),
        "update() on 'orders': the before_update callbacks left no column to set; "
        "a callback may change the values, not remove them all",
        id="update-values",
    ),
    pytest.param(
        "before_update", "where", lambda db: db.update("orders", {"sku": "a"}, {"qty": 5}),
        "update() on 'orders': the before_update callbacks left an empty where, which would update every row",
        id="update-where",
    ),
    pytest.param(
        "before_delete", "where", lambda db: db.delete("orders", {"sku": "a"}),
        "delete() on 'orders': the before_delete callbacks left an empty where, which would delete every row",
        id="delete-where",
    ),
]


@pytest.mark.parametrize(("event", "part", "call", "message"), EMPTIED)
def test_a_before_callback_that_empties_the_change_is_refused_and_rolls_the_session_back(db, event, part, call, message):
    db.create_many("orders", [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}])
    db.on(event, "orders", emptying(part))
    with pytest.raises(ValueError) as raised:
        call(db)  # alone: its own session
    assert str(raised.value) == message
    with pytest.raises(ValueError) as raised:
        with db.session():
            db.create("orders", {"sku": "c"})
            call(db)
    assert str(raised.value) == message
    error = None
    with pytest.raises(ValueError) as again:
        with db.session():
            db.create("orders", {"sku": "d"})
            try:
                call(db)
            except ValueError as caught:
                error = caught  # caught, but the session is doomed like after any failing callback
            with pytest.raises(DatabaseError, match=r"will be rolled back: a callback raised ValueError"):
                db.create("orders", {"sku": "e"})
    assert again.value is error
    assert db.read("orders") == [{"id": 1, "sku": "a", "qty": 1}, {"id": 2, "sku": "b", "qty": 2}]


def test_a_before_callback_that_leaves_an_unknown_column_rolls_the_session_back(db):
    def misspell(event):
        event.values["quantity"] = event.values.pop("qty", 0)

    db.on("before_create", "orders", misspell)
    db.on("before_update", "orders", misspell)
    for call in (lambda: db.create("orders", {"sku": "b", "qty": 1}), lambda: db.update("orders", {"sku": "a"}, {"qty": 2})):
        with pytest.raises(SchemaError, match=r"^no column 'quantity' in table 'orders' of "):
            with db.session():
                db.create("audit", {"event": "gone with the session"})
                try:
                    call()
                except SchemaError:
                    pass
                with pytest.raises(DatabaseError, match=r"will be rolled back: a callback raised SchemaError"):
                    db.read("orders")
    assert db.read("audit") == []


def test_a_before_create_callback_that_empties_the_row_inserts_the_defaults(db):
    # As create(table, {}) does: INSERT ... DEFAULT VALUES.
    db.on("before_create", "orders", emptying("values"))
    seen = []
    db.on("after_create", "orders", lambda event: seen.append((event.values, event.result)))
    row_id = db.create("orders", {"sku": "a", "qty": 1})
    assert db.create_many("orders", [{"sku": "b"}, {"sku": "c"}]) == 2
    assert db.read("orders") == [{"id": n, "sku": None, "qty": None} for n in (1, 2, 3)]
    assert seen == [({}, row_id), ({}, 2), ({}, 3)]


def test_registering_a_callback_checks_its_arguments(db):
    with pytest.raises(ValueError, match=r"unknown event 'on_create'; events are: before_create, after_create, "):
        db.on("on_create", "orders", print)
    with pytest.raises(SchemaError, match=r"no table 'order' in .*; tables: 'audit', 'orders'"):
        db.on("after_create", "order", print)
    with pytest.raises(TypeError, match=r"callback for after_create on 'orders' must be callable, not str"):
        db.on("after_create", "orders", "print")


# ---------------------------------------------------------------- transactions SQLite ends itself

ENDING = [
    Migration("strict", "0001_codes", "CREATE TABLE codes (id INTEGER PRIMARY KEY, code TEXT UNIQUE ON CONFLICT ROLLBACK)"),
    Migration("strict", "0002_guarded", """
        CREATE TABLE guarded (id INTEGER PRIMARY KEY, value TEXT);
        CREATE TRIGGER guard BEFORE INSERT ON guarded WHEN NEW.value = 'bad'
        BEGIN SELECT RAISE(ROLLBACK, 'bad value refused'); END;
    """),
]

# A row SQLite refuses by rolling the whole transaction back (savepoints
# included), the table it goes to, and SQLite's message.
ENDERS = {
    "unique-on-conflict-rollback": ("codes", {"code": "taken"}, "UNIQUE constraint failed: codes.code"),
    "trigger-raise-rollback": ("guarded", {"value": "bad"}, "bad value refused"),
}


@pytest.fixture
def strict(sqlite_db):
    """SQLite only: ON CONFLICT ROLLBACK and RAISE(ROLLBACK) are SQLite's (PostgreSQL aborts the
    transaction at any error: see the tests after these)."""
    db = sqlite_db
    db.upgrade(ENDING)
    db.create("codes", {"code": "taken"})
    return db


def later_message(db, message):
    return (
        rf"^this session on {re.escape(db.label)} was rolled back by SQLite at IntegrityError: {re.escape(message)} "
        rf"\(an error caught inside the session\); nothing of it will be committed: leave the session$"
    )


def exit_message(db, message):
    return (
        rf"^the session on {re.escape(db.label)} was rolled back by SQLite at IntegrityError: {re.escape(message)}, "
        rf"an error caught inside the session; nothing of the session was committed$"
    )


def committed(db):
    """What another connection sees: committed rows only (SQLite)."""
    with closing(sqlite3.connect(db.path)) as raw:
        return (
            raw.execute("SELECT sku FROM orders ORDER BY id").fetchall(),
            raw.execute("SELECT code FROM codes ORDER BY id").fetchall(),
            raw.execute("SELECT value FROM guarded ORDER BY id").fetchall(),
        )


def refuse(db, table, row, how):
    """Make SQLite end the transaction: the refused row alone, or inside a create_many."""
    if how == "create":
        db.create(table, row)
    else:
        db.create_many(table, [{key: "fine" for key in row}, row])


def every_later_call(db):
    return [
        lambda: db.create("orders", {"sku": "after"}),
        lambda: db.create_many("orders", [{"sku": "after"}]),
        lambda: db.update("orders", {"sku": "outer"}, {"qty": 1}),
        lambda: db.delete("orders", {"sku": "outer"}),
        lambda: db.read("orders"),
        lambda: db.get("orders", 1),
        lambda: db.wipe(),
        lambda: db.session().__enter__(),
    ]


@pytest.mark.parametrize("how", ["create", "create_many"])
@pytest.mark.parametrize("case", ENDERS)
def test_an_error_that_ends_the_transaction_dooms_a_flat_session(strict, case, how):
    db = strict
    table, row, message = ENDERS[case]
    with pytest.raises(DatabaseError, match=exit_message(db, message)) as at_exit:
        with db.session():
            db.create("orders", {"sku": "outer"})
            with pytest.raises(sqlite3.IntegrityError, match=f"^{re.escape(message)}$") as ended:
                refuse(db, table, row, how)
            # Caught and carried on: every later call refuses instead of
            # writing in autocommit mode.
            for call in every_later_call(db):
                with pytest.raises(DatabaseError, match=later_message(db, message)) as later:
                    call()
                assert later.value.__cause__ is ended.value and later.value.path == db.label
    assert at_exit.value.__cause__ is ended.value
    assert committed(db) == ([], [("taken",)], [])
    db.create("orders", {"sku": "next"})  # the next session starts clean
    assert skus(db) == ["next"]


@pytest.mark.parametrize("how", ["create", "create_many"])
@pytest.mark.parametrize("case", ENDERS)
def test_an_error_that_ends_the_transaction_dooms_the_outer_session_of_a_savepoint(strict, case, how):
    db = strict
    table, row, message = ENDERS[case]
    with pytest.raises(DatabaseError, match=exit_message(db, message)) as at_exit:
        with db.session():
            db.create("orders", {"sku": "outer"})
            with db.session():
                db.create("orders", {"sku": "inner"})
                with pytest.raises(sqlite3.IntegrityError, match=f"^{re.escape(message)}$") as ended:
                    refuse(db, table, row, how)
            # The savepoint ended quietly (there was nothing left to release);
            # the outermost session raises.
            with pytest.raises(DatabaseError, match=later_message(db, message)):
                db.create("orders", {"sku": "after"})
    assert at_exit.value.__cause__ is ended.value
    assert committed(db) == ([], [("taken",)], [])


@pytest.mark.parametrize("case", ENDERS)
def test_a_caller_expecting_only_a_savepoint_undone_is_told_the_whole_session_is_gone(strict, case):
    db = strict
    table, row, message = ENDERS[case]
    with pytest.raises(DatabaseError, match=exit_message(db, message)):
        with db.session():
            db.create("orders", {"sku": "outer"})
            try:
                with db.session():
                    db.create("orders", {"sku": "inner"})
                    db.create(table, row)
            except sqlite3.IntegrityError as error:  # as one would for a savepoint
                assert str(error) == message
    assert committed(db) == ([], [("taken",)], [])


def test_an_error_that_ends_the_transaction_outside_a_session_is_just_that_error(strict):
    with pytest.raises(sqlite3.IntegrityError, match=r"^UNIQUE constraint failed: codes.code$"):
        strict.create("codes", {"code": "taken"})
    assert strict.create("codes", {"code": "new"}) == 2


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_a_transaction_ended_behind_the_layers_back_is_never_committed(db, engine, nested):
    # No public call ends a transaction without an error passing through the
    # layer; a ROLLBACK on its own driver connection stands in for one that would.
    how = "" if engine.postgres else " \\(SQLite rolled it back\\)"
    with pytest.raises(DatabaseError, match=(
        rf"^the transaction of this session on "
        rf"{re.escape(db.label)} ended before the session did{how}; "
        rf"nothing of the session was committed"
    )):
        with db.session():
            db.create("orders", {"sku": "outer"})
            if nested:
                with db.session():
                    db._threads.state.conn.execute("ROLLBACK")
                refused = "aborted" if engine.postgres else "rolled back by SQLite"
                with pytest.raises(DatabaseError, match=rf"^this session on .* was {refused}"):
                    db.create("orders", {"sku": "after"})
            else:
                db._threads.state.conn.execute("ROLLBACK")
    assert skus(db) == []
    db.create("orders", {"sku": "next"})  # the next session starts clean
    assert skus(db) == ["next"]


# ---------------------------------------------------------------- an error caught inside a session


def test_a_statement_that_may_fail_goes_in_a_nested_session_on_every_engine(db, engine):
    # The portable way to carry on after an expected failure: the nested
    # session (a savepoint) undoes the failed statement alone.
    db.create("orders", {"sku": "taken"})
    with db.session():
        db.create("orders", {"sku": "before"})
        with pytest.raises(engine.integrity_error, match=engine.unique_violation("orders", "sku")):
            with db.session():
                db.create("orders", {"sku": "in the savepoint"})
                db.create("orders", {"sku": "taken"})
        db.update("orders", {"sku": "before"}, {"qty": 1})
        db.create("orders", {"sku": "after"})
    assert skus(db) == ["taken", "before", "after"]
    assert db.read("orders", where={"sku": "before"})[0]["qty"] == 1


def test_an_error_caught_in_a_session_without_a_nested_one(db, engine):
    # SQLite undoes the failed statement and the session goes on. PostgreSQL
    # aborts the transaction: every later call in the session is refused, and
    # its end raises; nothing of it is committed.
    db.create("orders", {"sku": "taken"})
    if not engine.postgres:
        with db.session():
            db.create("orders", {"sku": "before"})
            with pytest.raises(engine.integrity_error):
                db.create("orders", {"sku": "taken"})
            db.create("orders", {"sku": "after"})
        assert skus(db) == ["taken", "before", "after"]
        return
    import psycopg

    refused = (
        rf'PostgreSQL refused a statement with UniqueViolation: duplicate key value violates unique constraint '
        rf'"orders_sku_key"'
    )
    with pytest.raises(DatabaseError, match=(
        rf"^the session on {re.escape(db.label)} was aborted: {refused}, an error caught inside the session; "
        rf"nothing of the session was committed$"
    )) as at_exit:
        with db.session():
            db.create("orders", {"sku": "before"})
            with pytest.raises(psycopg.errors.UniqueViolation) as failed:
                db.create("orders", {"sku": "taken"})
            for call in every_later_call(db):
                with pytest.raises(DatabaseError, match=(
                    rf"^this session on {re.escape(db.label)} was aborted: {refused} \(an error caught inside the "
                    rf"session\); nothing of it will be committed: leave the session$"
                )) as later:
                    call()
                assert later.value.__cause__ is failed.value and later.value.path == db.label
    assert at_exit.value.__cause__ is failed.value
    assert engine.query("SELECT sku FROM orders ORDER BY id", name="sessions") == [("taken",)]
    db.create("orders", {"sku": "next"})  # the next session starts clean
    assert skus(db) == ["taken", "next"]


def test_an_error_caught_inside_a_nested_session_that_carries_on(db, engine):
    # SQLite: the nested session goes on. PostgreSQL: the nested session is
    # aborted; leaving it raises DatabaseError, its work is rolled back, and
    # the enclosing session carries on and commits its own work.
    db.create("orders", {"sku": "taken"})
    with db.session():
        db.create("orders", {"sku": "outer"})
        if not engine.postgres:
            with db.session():
                db.create("orders", {"sku": "inner"})
                with pytest.raises(engine.integrity_error):
                    db.create("orders", {"sku": "taken"})
                db.create("orders", {"sku": "inner-after"})
        else:
            with pytest.raises(DatabaseError, match=(
                rf"^the nested session on {re.escape(db.label)} was aborted: PostgreSQL refused a statement with "
                rf"UniqueViolation: .*, an error caught inside it; its work was rolled back, the enclosing session "
                rf"carries on$"
            )):
                with db.session():
                    db.create("orders", {"sku": "inner"})
                    with pytest.raises(engine.integrity_error):
                        db.create("orders", {"sku": "taken"})
                    with pytest.raises(DatabaseError, match=r"^this nested session on .* was aborted: .*: leave the nested session$"):
                        db.create("orders", {"sku": "inner-after"})
        db.create("orders", {"sku": "outer-after"})
    expected = ["taken", "outer", "inner", "inner-after", "outer-after"] if not engine.postgres else ["taken", "outer", "outer-after"]
    assert skus(db) == expected
