"""backup() while another process writes, and wipe() of a namespace or of everything: on each engine.

A backup is engine-specific (SQLite's is a database file written with its
backup API; PostgreSQL's a file of rows that ``restore`` loads: see
test_db_postgres.py), so what a backup is made of is tested per engine; that
it is one consistent snapshot taken while others write, on both.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from contextlib import closing, contextmanager

import pytest

from taskcatalog.db import DatabaseError, Migration, MigrationError, connect

SHOP_SQL = [
    ("shop", "0001_orders", "CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT)"),
    (
        "shop",
        "0002_lines",
        "CREATE TABLE lines (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders(id), qty INTEGER)",
    ),
]
ACME_SQL = [("acme", "0001_notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")]
SHOP = [Migration(*m) for m in SHOP_SQL]
ACME = [Migration(*m) for m in ACME_SQL]


def shop(engine):
    return [engine.migration(*m) for m in SHOP_SQL]


def acme(engine):
    return [engine.migration(*m) for m in ACME_SQL]


@pytest.fixture
def db(engine):
    with engine.connect("main") as db:
        db.upgrade(shop(engine))
        db.upgrade(acme(engine))
        yield db


@pytest.fixture
def sqlite_db(tmp_path):
    """SQLite only: for what its backups are (a database file, WAL, locks on the destination)."""
    with connect(tmp_path / "main.sqlite3") as db:
        db.upgrade(SHOP)
        db.upgrade(ACME)
        yield db


def fill(db):
    order = db.create("orders", {"sku": "a"})
    db.create_many("lines", [{"order_id": order, "qty": q} for q in range(3)])
    db.create("notes", {"body": "keep me?"})


def count(db, table):
    return len(db.read(table))


# ---------------------------------------------------------------- wipe


def test_wipe_everything_keeps_the_schema_and_the_migration_records(db, engine):
    fill(db)
    assert db.wipe() == {"lines": 3, "notes": 1, "orders": 1}
    assert [count(db, t) for t in ("orders", "lines", "notes")] == [0, 0, 0]
    assert [s.state for s in db.migration_status(shop(engine) + acme(engine))] == ["applied"] * 3
    assert db.upgrade(shop(engine)) == []
    fill(db)  # the tables still work
    assert count(db, "lines") == 3


def test_wipe_a_namespace_deletes_only_its_tables(db):
    fill(db)
    assert db.wipe("shop") == {"lines": 3, "orders": 1}
    assert [count(db, t) for t in ("orders", "lines", "notes")] == [0, 0, 1]
    assert db.wipe("acme") == {"notes": 1}
    assert count(db, "notes") == 0


def test_wipe_follows_tables_a_namespace_created_later_and_forgets_dropped_ones(db, engine):
    db.upgrade([
        engine.migration("acme", "0002_tags", "CREATE TABLE tags (name TEXT)"),
        engine.migration("acme", "0003_drop_notes", "DROP TABLE notes"),
    ])
    db.create_many("tags", [{"name": "t"}])
    assert db.wipe("acme") == {"tags": 1}


def test_wipe_of_an_unknown_namespace_is_refused(db):
    with pytest.raises(MigrationError, match=r"no migrations of namespace 'shoop' are recorded in .*; namespaces: acme, shop"):
        db.wipe("shoop")
    with pytest.raises(TypeError, match=r"wipe\(\) namespace must be a str, not int"):
        db.wipe(1)


def test_wipe_in_a_session_is_rolled_back_with_it(db):
    fill(db)
    with pytest.raises(RuntimeError, match=r"^undo the wipe$"):
        with db.session():
            db.wipe()
            assert count(db, "orders") == 0
            raise RuntimeError("undo the wipe")
    assert count(db, "orders") == 1


def test_a_backup_holds_every_row_and_the_migration_records(db, engine, tmp_path):
    fill(db)
    target = db.backup(tmp_path / "copies" / "nested" / "copy.backup")
    assert target == tmp_path / "copies" / "nested" / "copy.backup"
    with engine.restored(target, shop(engine) + acme(engine)) as copy:
        for table in ("orders", "lines", "notes"):
            assert copy.read(table, order_by="id") == db.read(table, order_by="id")
        assert [s.state for s in copy.migration_status(shop(engine) + acme(engine))] == ["applied"] * 3


# ---------------------------------------------------------------- backup


def integrity(path):
    with closing(sqlite3.connect(path)) as raw:
        return raw.execute("PRAGMA integrity_check").fetchone()[0], raw.execute("SELECT count(*) FROM orders").fetchone()[0]


def test_backup_copies_the_data_into_one_self_contained_file(sqlite_db, tmp_path):
    fill(sqlite_db)
    target = sqlite_db.backup(tmp_path / "copies" / "nested" / "copy.sqlite3")
    assert target == tmp_path / "copies" / "nested" / "copy.sqlite3"
    assert integrity(target) == ("ok", 1)
    assert not os.path.exists(f"{target}-wal")
    with closing(sqlite3.connect(target)) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    with connect(target) as copy:  # a backup is an ordinary database again
        assert copy.read("notes") == [{"id": 1, "body": "keep me?"}]
        assert [s.state for s in copy.migration_status(SHOP)] == ["applied", "applied"]


def test_backup_replaces_an_older_backup(sqlite_db, tmp_path):
    target = tmp_path / "copy.sqlite3"
    sqlite_db.backup(target)
    fill(sqlite_db)
    sqlite_db.backup(str(target))
    assert integrity(target) == ("ok", 1)


def in_a_thread(work, seconds=60):
    """Return work(), run in a thread of its own, or raise what it raised.

    For calls that, broken, would wait forever: the test fails after
    ``seconds`` instead of hanging the suite. ``work`` opens (and closes)
    whatever it uses, so a hung thread holds nothing the test tears down.
    """
    outcome = {}

    def run():
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still waiting after {seconds} s: the call hangs")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_backup_inside_a_session_copies_committed_data_without_waiting(engine, tmp_path):
    url, target = engine.url("main"), tmp_path / "copy.backup"

    def work():
        with connect(url) as db:
            db.upgrade(shop(engine))
            db.create("orders", {"sku": "committed"})
            with db.session():
                db.create("orders", {"sku": "uncommitted"})
                db.backup(target)  # a connection of its own: SQLite's WAL reader, PostgreSQL's snapshot
                db.create("orders", {"sku": "after the backup"})  # the session goes on
            return count(db, "orders")

    assert in_a_thread(work) == 3
    with engine.restored(target, shop(engine)) as copy:
        assert [r["sku"] for r in copy.read("orders")] == ["committed"]


def test_backup_of_a_memory_database_inside_a_session_is_refused(tmp_path):
    target = tmp_path / "copy.sqlite3"

    def work():
        with connect(":memory:") as db:
            db.upgrade(SHOP)
            db.create("orders", {"sku": "committed"})
            with db.session():
                db.create("orders", {"sku": "pending"})
                with pytest.raises(DatabaseError) as refused:
                    db.backup(target)
                assert not target.exists()  # refused before touching anything
                db.create("orders", {"sku": "after the refusal"})  # the session goes on
            db.backup(target)  # outside the session it works
            return refused.value

    refused = in_a_thread(work)
    assert str(refused) == (
        "backup() of the :memory: database inside a session would wait forever for that session's own "
        "transaction; call it after the session ends"
    )
    assert refused.path == ":memory:"
    assert integrity(target) == ("ok", 3)


def test_backup_of_a_memory_database(tmp_path):
    with connect(":memory:") as db:
        db.upgrade(SHOP)
        db.create("orders", {"sku": "m"})
        db.backup(tmp_path / "from-memory.sqlite3")
    assert integrity(tmp_path / "from-memory.sqlite3") == ("ok", 1)


def test_backup_refuses_to_overwrite_its_own_database(sqlite_db, tmp_path):
    message = f"refusing to back up {tmp_path / 'main.sqlite3'} onto itself"
    for spelling in (tmp_path / "main.sqlite3", tmp_path / "x" / ".." / "main.sqlite3", str(tmp_path / "main.sqlite3")):
        with pytest.raises(DatabaseError) as raised:
            sqlite_db.backup(spelling)
        assert str(raised.value) == message
    os.link(tmp_path / "main.sqlite3", tmp_path / "hardlink.sqlite3")
    with pytest.raises(DatabaseError) as raised:
        sqlite_db.backup(tmp_path / "hardlink.sqlite3")
    assert str(raised.value) == message
    assert count(sqlite_db, "orders") == 0


def test_backup_onto_a_file_that_is_not_a_database_is_refused(sqlite_db, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(DatabaseError, match=r"cannot write the backup .*junk.bin: file is not a database"):
        sqlite_db.backup(junk)
    with pytest.raises(TypeError, match=r"backup\(\) path must be a str or path, not int"):
        sqlite_db.backup(3)


def keep_writing(url, started, stop):
    """Run in a spawned process: commit small sessions until told to stop."""
    with connect(url) as db:
        n = 0
        while not stop.is_set():
            with db.session():
                order = db.create("orders", {"sku": f"o{n}"})
                db.create_many("lines", [{"order_id": order, "qty": q} for q in range(5)])
            n += 1
            if n == 10:
                started.set()


def test_backups_taken_while_another_process_writes_are_consistent(db, engine, tmp_path):
    context = multiprocessing.get_context("spawn")
    started, stop = context.Event(), context.Event()
    writer = context.Process(target=keep_writing, args=(engine.url("main"), started, stop))
    writer.start()
    copies = []
    try:
        assert started.wait(timeout=60), "the writer never got going"
        for i in range(5):
            copies.append(db.backup(tmp_path / f"copy-{i}.backup"))
    finally:
        stop.set()
        writer.join(timeout=60)
    assert writer.exitcode == 0
    seen = []
    for i, copy in enumerate(copies):
        with engine.restored(copy, shop(engine) + acme(engine), name=f"restored-{i}") as restored:
            orders = count(restored, "orders")
            # Every order arrived with its five lines: no copy holds half a session.
            assert count(restored, "lines") == 5 * orders
            assert {r["order_id"] for r in restored.read("lines")} == {r["id"] for r in restored.read("orders")}
            seen.append(orders)
    assert seen == sorted(seen) and seen[0] >= 10
    assert count(db, "orders") >= seen[-1]


# ---------------------------------------------------------------- backup onto a file in use


def theirs(path, wal=True):
    """A database at ``path`` holding someone else's data: one note, "theirs"."""
    with connect(path) as other:
        other.upgrade(ACME)
        other.create("notes", {"body": "theirs"})
    if not wal:
        with closing(sqlite3.connect(path)) as raw:
            raw.execute("PRAGMA journal_mode = DELETE")


def content(path):
    """Tables, notes and journal mode of ``path``, read with plain sqlite3."""
    with closing(sqlite3.connect(path)) as raw:
        names = [r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        notes = raw.execute("SELECT body FROM notes ORDER BY id").fetchall() if "notes" in names else None
        return names, notes, raw.execute("PRAGMA journal_mode").fetchone()[0]


def in_use(db, target):
    return (
        f"cannot back up {db.label} to {target}: that file is open in another connection (in use by this or "
        f"another process); close it there first, or back up to another path. Nothing was written"
    )


@contextmanager
def held_by_this_library(path):
    with connect(path) as other:
        yield


@contextmanager
def held_by_sqlite3(path, sql):
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        for statement in sql:
            raw.execute(statement).fetchall()
        yield


def hold_open(path, ready, done):
    """Run in a spawned process: keep the database at ``path`` open until told to stop."""
    with connect(path) as db:
        db.read("notes")
        ready.set()
        done.wait(timeout=60)


@contextmanager
def held_by_another_process(path):
    context = multiprocessing.get_context("spawn")
    ready, done = context.Event(), context.Event()
    holder = context.Process(target=hold_open, args=(str(path), ready, done))
    holder.start()
    try:
        assert ready.wait(timeout=60), "the holding process never opened the database"
        yield
    finally:
        done.set()
        holder.join(timeout=60)
    assert holder.exitcode == 0


HOLDERS = [
    pytest.param(True, held_by_this_library, id="this-library"),
    pytest.param(True, lambda path: held_by_sqlite3(path, ["SELECT * FROM notes"]), id="sqlite3-wal-idle"),
    pytest.param(False, lambda path: held_by_sqlite3(path, ["BEGIN", "SELECT * FROM notes"]), id="sqlite3-reading"),
    pytest.param(False, lambda path: held_by_sqlite3(path, ["BEGIN IMMEDIATE"]), id="sqlite3-writing"),
    pytest.param(True, held_by_another_process, id="another-process"),
]


@pytest.mark.parametrize(("wal", "holder"), HOLDERS)
def test_backup_onto_a_database_open_elsewhere_is_refused_before_writing(tmp_path, wal, holder):
    target = tmp_path / "in-use.sqlite3"
    theirs(target, wal=wal)
    before = content(target)

    def work():
        with connect(tmp_path / "main.sqlite3") as db:
            db.upgrade(SHOP + ACME)
            fill(db)
            with holder(target):
                with pytest.raises(DatabaseError) as refused:
                    db.backup(target)
            return db, refused.value

    db, refused = in_a_thread(work, seconds=30)
    assert type(refused) is DatabaseError
    assert str(refused) == in_use(db, target)
    assert refused.path == str(target)
    assert content(target) == before == (["notes", "taskcatalog_migrations"], [("theirs",)], "wal" if wal else "delete")


def test_backup_onto_a_database_nobody_has_open_replaces_it(sqlite_db, tmp_path):
    fill(sqlite_db)
    for wal in (True, False):
        target = tmp_path / f"old-{wal}.sqlite3"
        theirs(target, wal=wal)
        assert sqlite_db.backup(target) == target
        assert content(target) == (["lines", "notes", "orders", "taskcatalog_migrations"], [("keep me?",)], "delete")
        assert integrity(target) == ("ok", 1)
        assert not os.path.exists(f"{target}-wal") and not os.path.exists(f"{target}-shm")


def test_an_idle_rollback_journal_connection_does_not_stop_a_backup_and_then_reads_the_copy(sqlite_db, tmp_path):
    # In rollback-journal mode a connection outside a transaction holds no
    # lock: SQLite cannot tell it is there, and it needs no protection, since
    # it reads the changed file afresh at its next transaction.
    fill(sqlite_db)
    target = tmp_path / "idle.sqlite3"
    theirs(target, wal=False)
    with closing(sqlite3.connect(target, isolation_level=None)) as idle:
        assert idle.execute("SELECT body FROM notes").fetchall() == [("theirs",)]
        sqlite_db.backup(target)
        assert idle.execute("SELECT body FROM notes").fetchall() == [("keep me?",)]
        assert idle.execute("SELECT count(*) FROM orders").fetchone() == (1,)
