"""Clear errors: not a database, locked past the timeout, closed, unwritable folder, bad options.

Locks and closed connections are tested on each engine; what is about files
(not a database, damaged pages, folders) and SQLite's own options on SQLite
alone. PostgreSQL's connection errors are in test_db_postgres.py.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from contextlib import closing

import pytest

from taskcatalog.errors import CatalogError
from taskcatalog.db import DatabaseError, DatabaseLocked, Migration, connect, SQLiteConnection

SCHEMA = Migration("shop", "0001_orders", "CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT)")


def test_a_file_of_random_bytes_is_refused_at_connect_naming_it(tmp_path):
    path = tmp_path / "random.sqlite3"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(DatabaseError, match=rf"{re.escape(str(path))} is not a SQLite database, or is damaged") as raised:
        connect(path)
    assert isinstance(raised.value, CatalogError)
    assert raised.value.path == str(path)
    assert isinstance(raised.value.__cause__, sqlite3.DatabaseError)


def test_a_text_file_is_refused_too(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("These are my notes, not a database.\n" * 50)
    with pytest.raises(DatabaseError) as raised:
        connect(path)
    assert str(raised.value) == f"{path} is not a SQLite database, or is damaged (file is not a database)"


def test_damaged_pages_behind_a_valid_header_are_found_at_the_first_read(tmp_path):
    path = tmp_path / "damaged.sqlite3"
    with connect(path) as db:
        db.upgrade([SCHEMA])
        db.create_many("orders", [{"sku": f"sku-{n:04d}-" + "x" * 40} for n in range(2000)])
    size = path.stat().st_size
    with closing(sqlite3.connect(path)) as raw:
        page = raw.execute("PRAGMA page_size").fetchone()[0]
    assert size > 4 * page and not os.path.exists(f"{path}-wal")  # all pages are in the file
    with open(path, "r+b") as file:  # page 1 (header and schema) intact; the middle of page 2 onward overwritten
        file.seek(page + page // 2)
        file.write(b"\xff" * (size - page - page // 2))
    with connect(path) as db:  # opening reads the header only: the damage is not seen yet
        with pytest.raises(DatabaseError) as raised:
            db.read("orders", limit=3)
    assert str(raised.value) == (
        f"the database {path} is damaged (database disk image is malformed); restore it from a backup "
        f"(PRAGMA integrity_check lists what is broken)"
    )
    assert raised.value.path == str(path)
    assert isinstance(raised.value.__cause__, sqlite3.DatabaseError)
    assert raised.value.__cause__.sqlite_errorname == "SQLITE_CORRUPT"


@pytest.fixture
def locked(engine):
    """A database whose writes another connection holds up, and a connection with a short timeout."""
    with engine.connect("locked") as db:
        db.upgrade([engine.migration("shop", "0001_orders", SCHEMA.sql)])
        db.create("orders", {"sku": "before"})
    with engine.holding_writes("orders", "locked"):
        with engine.connect("locked", timeout=0.05) as db:
            yield db


def test_a_lock_held_past_the_timeout_is_a_clear_error_naming_the_database(locked, engine):
    db = locked
    calls = [
        lambda: db.create("orders", {"sku": "x"}),
        lambda: db.create_many("orders", [{"sku": "x"}]),
        lambda: db.update("orders", {"sku": "before"}, {"sku": "x"}),
        lambda: db.delete("orders", {"sku": "before"}),
        lambda: db.wipe(),
    ]
    if not engine.postgres:
        # SQLite's one write lock is taken at BEGIN (IMMEDIATE), and every
        # migration takes it; a PostgreSQL session waits only for the locks
        # its statements need, and a migration for other migrations.
        calls += [
            lambda: db.session().__enter__(),
            lambda: db.upgrade([Migration("shop", "0002_more", "CREATE TABLE more (x)")]),
        ]
    for call in calls:
        with pytest.raises(DatabaseLocked, match=f"^{engine.locked(db, '0.05')}$") as raised:
            call()
        assert isinstance(raised.value, DatabaseError) and raised.value.path == db.label
        assert isinstance(raised.value.__cause__, engine.lock_error)
    # Readers are not blocked by a writer (WAL mode; PostgreSQL's MVCC).
    assert db.read("orders") == [{"id": 1, "sku": "before"}]


def test_a_lock_timeout_inside_a_session_rolls_it_back(locked, engine):
    db = locked
    with pytest.raises(DatabaseLocked):
        with db.session():
            db.create("orders", {"sku": "x"})
    assert db.read("orders") == [{"id": 1, "sku": "before"}]


def test_after_a_lock_timeout_the_connection_still_works(engine):
    with engine.connect("recovers", timeout=0.05) as db:
        db.upgrade([engine.migration("shop", "0001_orders", SCHEMA.sql)])
        with engine.holding_writes("orders", "recovers"):
            with pytest.raises(DatabaseLocked) as raised:
                db.create("orders", {"sku": "x"})
            assert re.fullmatch(engine.locked(db, "0.05"), str(raised.value))
        assert db.create("orders", {"sku": "y"}) in (1, 2)  # PostgreSQL may have spent id 1 on the refused row
        assert [r["sku"] for r in db.read("orders")] == ["y"]


def test_use_after_close_is_a_clear_error(engine, tmp_path):
    db = engine.connect("closed")
    db.upgrade([engine.migration("shop", "0001_orders", SCHEMA.sql)])
    db.close()
    db.close()  # idempotent
    message = rf"the connection to {re.escape(db.label)} is closed"
    calls = [
        lambda: db.create("orders", {"sku": "x"}),
        lambda: db.create_many("orders", [{"sku": "x"}]),
        lambda: db.read("orders"),
        lambda: db.get("orders", 1),
        lambda: db.update("orders", {"id": 1}, {"sku": "x"}),
        lambda: db.delete("orders", {"id": 1}),
        lambda: db.session().__enter__(),
        lambda: db.wipe(),
        lambda: db.backup(tmp_path / "copy.backup"),
        lambda: db.upgrade([engine.migration("shop", "0001_orders", SCHEMA.sql)]),
        lambda: db.migration_status(),
    ]
    for call in calls:
        with pytest.raises(DatabaseError, match=f"^{message}$"):
            call()
    errors = []

    def from_another_thread():
        try:
            db.read("orders")
        except DatabaseError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=from_another_thread)
    thread.start()
    thread.join()
    assert errors == [f"the connection to {db.label} is closed"]
    assert "closed" in repr(db)
    assert not (tmp_path / "copy.backup").exists()


def test_a_connection_closes_with_its_block(engine):
    with engine.connect("block") as db:
        db.upgrade([engine.migration("shop", "0001_orders", SCHEMA.sql)])
    with pytest.raises(DatabaseError) as raised:
        db.read("orders")
    assert str(raised.value) == f"the connection to {db.label} is closed"


def test_a_folder_that_cannot_be_created_is_named(tmp_path):
    (tmp_path / "afile").write_text("a file where a folder should be")
    path = tmp_path / "afile" / "db.sqlite3"
    with pytest.raises(
        DatabaseError,
        match=rf"cannot create the folder {re.escape(str(tmp_path / 'afile'))} for the database {re.escape(str(path))}",
    ) as raised:
        connect(path)
    assert raised.value.path == str(path)
    assert isinstance(raised.value.__cause__, OSError)


def test_missing_folders_are_created(tmp_path):
    path = tmp_path / "var" / "customers" / "acme.sqlite3"
    with connect(path) as db:
        db.upgrade([SCHEMA])
    assert path.is_file()


def test_a_folder_is_not_a_database_file(tmp_path):
    with pytest.raises(DatabaseError, match=rf"^the database path {re.escape(str(tmp_path))} is a folder, not a file$"):
        connect(tmp_path)


def test_an_unwritable_folder_is_named(tmp_path, monkeypatch):
    # connect() asks os.access whether it may create files in the folder (WAL
    # needs two beside the database). Root may write anywhere, so the answer
    # a read-only folder gives an ordinary user is simulated for that folder only.
    folder = tmp_path / "ro"
    folder.mkdir()
    asked = []
    real_access = os.access

    def access(path, mode, **kwargs):
        asked.append((os.fspath(path), mode))
        if os.fspath(path) == str(folder) and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)
    path = folder / "db.sqlite3"
    with pytest.raises(DatabaseError) as raised:
        connect(path)
    assert str(raised.value) == f"the folder {folder} of the database {path} is not writable"
    assert raised.value.path == str(path)
    assert asked == [(str(folder), os.W_OK | os.X_OK)]
    assert list(folder.iterdir()) == []  # nothing was created


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere (see the test above)")
def test_a_read_only_folder_is_named(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(DatabaseError, match=rf"^the folder {re.escape(str(folder))} of the database .* is not writable$"):
            connect(folder / "db.sqlite3")
    finally:
        folder.chmod(0o700)


def test_a_conflict_inside_one_connection_is_not_called_a_lock_timeout(tmp_path):
    # SQLITE_LOCKED (6) is a statement conflicting with another statement of
    # the same connection (or of a shared cache), not a wait that timed out.
    # This layer's own calls cannot cause it (each statement is read to its
    # end before the next runs, one connection per thread), so a real one is
    # made on a plain sqlite3 connection and handed to the error mapping.
    path = tmp_path / "locked-inside.sqlite3"
    with connect(path, timeout=0.05) as db, closing(sqlite3.connect(path)) as raw:
        db.upgrade([SCHEMA])
        db.create_many("orders", [{"sku": "a"}, {"sku": "b"}])
        reading = raw.execute("SELECT * FROM orders")
        reading.fetchone()  # the statement is still open on the table
        with pytest.raises(sqlite3.OperationalError) as conflict:
            raw.execute("DROP TABLE orders")
        reading.close()
        assert conflict.value.sqlite_errorname == "SQLITE_LOCKED"
        with pytest.raises(DatabaseError) as raised:
            db._raise(conflict.value)
    assert type(raised.value) is DatabaseError  # not DatabaseLocked: waiting longer would not help
    assert str(raised.value) == (
        f"the database {path} refused a statement (database table is locked): another statement of the same "
        f"connection (or of a shared cache) still uses that table; finish or close that statement first"
    )
    assert raised.value.__cause__ is conflict.value


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": -1}, r"timeout must be a number of seconds >= 0, not -1"),
        ({"timeout": "5"}, r"timeout must be a number of seconds >= 0, not '5'"),
        ({"synchronous": "FAST; DROP TABLE x"}, r"synchronous must be one of OFF, NORMAL, FULL, EXTRA, not 'FAST; DROP TABLE x'"),
    ],
)
def test_bad_options_are_refused(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        SQLiteConnection(tmp_path / "x.sqlite3", **options)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'timout'"):
        connect(tmp_path / "x.sqlite3", timout=1)


def test_options_are_applied(tmp_path):
    with connect(tmp_path / "opts.sqlite3", synchronous="full", foreign_keys=False, timeout=2) as db:
        assert (db.synchronous, db.foreign_keys, db.timeout) == ("FULL", False, 2.0)
        db.upgrade([
            Migration("fk", "0001_parent", "CREATE TABLE parent (id INTEGER PRIMARY KEY)"),
            Migration("fk", "0002_child", "CREATE TABLE child (parent_id INTEGER REFERENCES parent(id))"),
        ])
        db.create("child", {"parent_id": 99})  # not enforced when foreign_keys=False
    with connect(tmp_path / "opts.sqlite3") as db:
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
            db.create("child", {"parent_id": 98})  # enforced by default
