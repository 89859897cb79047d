"""Migrations: order, idempotence, folders, drift, atomic failure, status, two processes."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import traceback
from contextlib import closing
from datetime import datetime, timedelta, timezone

import pytest

from taskcatalog.db import Migration, MigrationError, MigrationStatus, connect

ORDERS = Migration("shop", "0001_orders", "CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT)")
ITEMS = Migration("shop", "0002_items", "CREATE TABLE items (id INTEGER PRIMARY KEY, order_id INTEGER REFERENCES orders(id))")
QTY = Migration("shop", "0010_qty", "ALTER TABLE orders ADD COLUMN qty INTEGER NOT NULL DEFAULT 0")


@pytest.fixture
def path(tmp_path):
    return tmp_path / "migrations.sqlite3"


@pytest.fixture
def db(path):
    with connect(path) as db:
        yield db


def tables(path):
    with closing(sqlite3.connect(path)) as raw:
        return sorted(r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))


def records(path):
    with closing(sqlite3.connect(path)) as raw:
        return raw.execute("SELECT namespace, id, checksum FROM taskcatalog_migrations ORDER BY namespace, id").fetchall()


def write(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return folder


def test_migrations_apply_in_number_order_once(db, path):
    assert db.upgrade([QTY, ITEMS, ORDERS]) == ["0001_orders", "0002_items", "0010_qty"]
    assert db.upgrade([QTY, ITEMS, ORDERS]) == []
    assert tables(path) == ["items", "orders", "taskcatalog_migrations"]
    assert records(path) == [("shop", m.id, m.checksum) for m in (ORDERS, ITEMS, QTY)]
    assert db.create("orders", {"sku": "a"}) == 1  # the new schema is visible at once
    assert db.read("orders") == [{"id": 1, "sku": "a", "qty": 0}]


def test_new_migrations_are_applied_later_and_old_ones_skipped(db):
    assert db.upgrade([ORDERS]) == ["0001_orders"]
    assert db.upgrade([ORDERS, ITEMS]) == ["0002_items"]


def test_the_checksum_is_the_sha256_of_the_sql():
    assert ORDERS.checksum == hashlib.sha256(ORDERS.sql.encode()).hexdigest()
    assert ORDERS == Migration("shop", "0001_orders", ORDERS.sql, path="elsewhere.sql")


def test_namespaces_are_independent(db, path):
    other = Migration("acme", "0001_orders_log", "CREATE TABLE acme_log (id INTEGER PRIMARY KEY)")
    assert db.upgrade([ORDERS, other]) == ["0001_orders", "0001_orders_log"]
    assert [s.state for s in db.migration_status(namespace="acme")] == ["applied"]
    assert db.upgrade([other], namespace="acme") == []
    with pytest.raises(MigrationError, match=r"migration shop/0001_orders is not in namespace 'acme'"):
        db.upgrade([ORDERS], namespace="acme")


def test_applied_at_is_utc(db):
    before = datetime.now(timezone.utc)
    db.upgrade([ORDERS])
    (record,) = db.migration_status()
    applied = datetime.fromisoformat(record.applied_at)
    assert applied.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= applied <= datetime.now(timezone.utc)


def test_statements_are_split_where_sqlite_says_they_end(db):
    sql = """
    -- a comment; with a semicolon
    CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);  /* another; comment */
    INSERT INTO notes (body) VALUES ('semi;colon'), ('quote''s; end');
    CREATE TABLE counts (n INTEGER);
    INSERT INTO counts VALUES (0);
    CREATE TRIGGER count_notes AFTER INSERT ON notes BEGIN
        UPDATE counts SET n = n + 1;
    END;
    INSERT INTO notes (body) VALUES ('last one, no semicolon')
    """
    assert db.upgrade([Migration("notes", "0001_notes", sql)]) == ["0001_notes"]
    assert [r["body"] for r in db.read("notes", order_by="id")] == ["semi;colon", "quote's; end", "last one, no semicolon"]
    assert db.read("counts") == [{"n": 1}]


def test_a_failing_migration_leaves_nothing_of_itself(db, path):
    bad = Migration(
        "shop",
        "0002_bad",
        "CREATE TABLE first_table (id INTEGER);\nINSERT INTO first_table VALUES (1);\nCREATE TABLE orders (id INTEGER);",
        path="migrations/0002_bad.sql",
    )
    with pytest.raises(MigrationError) as raised:
        db.upgrade([ORDERS, bad, QTY])
    assert str(raised.value) == (
        f"migration shop/0002_bad (migrations/0002_bad.sql) failed at statement 3 of 3 (migrations/0002_bad.sql:3) "
        f"on {path}: table orders already exists; nothing of it was applied\n  CREATE TABLE orders (id INTEGER);"
    )
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    assert (raised.value.path, raised.value.line) == ("migrations/0002_bad.sql", 3)
    assert tables(path) == ["orders", "taskcatalog_migrations"]  # no first_table
    assert [s.state for s in db.migration_status([ORDERS, bad, QTY])] == ["applied", "pending", "pending"]


FAILING_FILE = """\
-- 0002_prices.sql: two statements, then one that fails

CREATE TABLE prices (sku TEXT, cents INTEGER);
INSERT INTO prices VALUES ('a', 1);  /* a comment; with a semicolon */

/* the failing one starts on line 7,
   after this comment */ INSERT INTO
    no_such_table VALUES (1);
"""


def test_a_failing_migration_names_the_file_and_line_of_its_statement(db, tmp_path, path):
    folder = write(tmp_path / "migrations", {"0001_orders.sql": ORDERS.sql, "0002_prices.sql": FAILING_FILE})
    with pytest.raises(MigrationError) as raised:
        db.upgrade(folder, namespace="shop")
    file = folder / "0002_prices.sql"
    assert str(raised.value) == (
        f"migration shop/0002_prices ({file}) failed at statement 3 of 3 ({file}:7) on {path}: "
        f"no such table: no_such_table; nothing of it was applied\n  INSERT INTO"
    )
    assert (raised.value.path, raised.value.line) == (str(file), 7)
    assert tables(path) == ["orders", "taskcatalog_migrations"]


def test_a_failing_migration_without_a_file_names_the_line_of_its_sql(db):
    with pytest.raises(MigrationError) as raised:
        db.upgrade([Migration("shop", "0001_two", "CREATE TABLE a (x);\n\n  CREATE TABLE a (y);")])
    assert str(raised.value).startswith("migration shop/0001_two failed at statement 2 of 2 (line 3) on ")
    assert (raised.value.path, raised.value.line) == (db.label, 3)


@pytest.mark.parametrize(
    ("sql", "word", "line"),
    [
        ("BEGIN; CREATE TABLE t (x);", "BEGIN", 1),
        ("CREATE TABLE t (x); COMMIT;", "COMMIT", 1),
        ("CREATE TABLE t (x);\n  -- note\n end", "end", 3),
    ],
)
def test_a_migration_cannot_control_the_transaction(db, path, sql, word, line):
    with pytest.raises(MigrationError) as raised:
        db.upgrade([Migration("shop", "0001_t", sql, path="m/0001_t.sql")])
    assert str(raised.value) == (
        f"migration shop/0001_t (m/0001_t.sql) controls transactions itself ({word} at m/0001_t.sql:{line}); "
        f"each migration already runs in its own transaction: remove the statement"
    )
    assert (raised.value.path, raised.value.line) == ("m/0001_t.sql", line)
    assert tables(path) == []  # refused while reading, before the bookkeeping table exists


def test_an_empty_migration_is_refused(db):
    with pytest.raises(MigrationError, match=r"migration shop/0001_nothing has no SQL statements"):
        db.upgrade([Migration("shop", "0001_nothing", "  -- only a comment\n ; ")])


def test_drift_is_refused_and_nothing_is_applied(db, path):
    db.upgrade([ORDERS])
    edited = Migration("shop", "0001_orders", ORDERS.sql + " -- tweak", path="m/0001_orders.sql")
    with pytest.raises(
        MigrationError,
        match=r"applied migration shop/0001_orders \(m/0001_orders.sql\) changed since it was applied to .*"
        r"\(checksum differs\); nothing was applied",
    ):
        db.upgrade([edited, ITEMS])
    assert tables(path) == ["orders", "taskcatalog_migrations"]
    assert [(s.id, s.state) for s in db.migration_status([edited, ITEMS])] == [
        ("0001_orders", "drifted"),
        ("0002_items", "pending"),
    ]


def test_status_reports_plain_records(db):
    db.upgrade([ORDERS, ITEMS])
    gone = Migration("shop", "0003_gone", "CREATE TABLE gone (x)")
    db.upgrade([gone])
    status = db.migration_status([ORDERS, QTY, Migration("shop", "0002_items", "CREATE TABLE changed (x)")])
    assert [(s.namespace, s.id, s.state) for s in status] == [
        ("shop", "0001_orders", "applied"),
        ("shop", "0002_items", "drifted"),
        ("shop", "0010_qty", "pending"),
        ("shop", "0003_gone", "missing"),
    ]
    assert all(isinstance(s, MigrationStatus) for s in status)
    assert status[0].checksum == status[0].applied_checksum == ORDERS.checksum
    assert status[2].applied_at is None and status[3].checksum is None
    assert [s.id for s in db.migration_status()] == ["0001_orders", "0002_items", "0003_gone"]
    assert db.migration_status(namespace="nobody") == []


def test_status_of_a_new_database_is_all_pending_and_writes_nothing(tmp_path):
    path = tmp_path / "new.sqlite3"
    with connect(path) as db:
        assert [s.state for s in db.migration_status([ORDERS])] == ["pending"]
    assert tables(path) == []


def test_a_folder_of_sql_files(db, tmp_path):
    folder = write(tmp_path / "migrations", {
        "0002_items.sql": ITEMS.sql,
        "0001_orders.sql": ORDERS.sql,
        ".gitkeep": "",
    })
    assert db.upgrade(folder, namespace="acme") == ["0001_orders", "0002_items"]
    assert db.upgrade(str(folder), namespace="acme") == []
    assert [(s.namespace, s.state) for s in db.migration_status(folder, namespace="acme")] == [("acme", "applied")] * 2


def test_a_windows_checkout_of_a_migration_file_is_not_drift(db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_orders.sql").write_bytes(b"CREATE TABLE orders (id INTEGER PRIMARY KEY);\r\nCREATE INDEX o ON orders (id);\r\n")
    db.upgrade(folder, namespace="shop")
    (folder / "0001_orders.sql").write_bytes(b"CREATE TABLE orders (id INTEGER PRIMARY KEY);\nCREATE INDEX o ON orders (id);\n")
    assert [s.state for s in db.migration_status(folder, namespace="shop")] == ["applied"]


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_a_migration_built_in_code_with_other_line_ends_is_the_same_migration(db, newline):
    lf = "CREATE TABLE orders (id INTEGER PRIMARY KEY);\nCREATE INDEX o ON orders (id);\n"
    other = Migration("shop", "0001_orders", lf.replace("\n", newline))
    same = Migration("shop", "0001_orders", lf)
    assert other.sql == lf
    assert other.checksum == same.checksum == hashlib.sha256(lf.encode()).hexdigest()
    assert other == same
    assert db.upgrade([other]) == ["0001_orders"]
    assert [s.state for s in db.migration_status([same])] == ["applied"]
    assert db.upgrade([same]) == []


def test_line_numbers_count_every_kind_of_line_end(db):
    sql = "CREATE TABLE a (x);\r\n\r\nCREATE TABLE b (y);\rCREATE TABLE a (z);\n"
    with pytest.raises(MigrationError) as raised:
        db.upgrade([Migration("shop", "0001_mixed", sql)])
    assert raised.value.line == 4
    assert "failed at statement 3 of 3 (line 4)" in str(raised.value)


def test_a_folder_migration_keeps_the_checksum_of_its_text_with_newlines(db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_orders.sql").write_bytes(b"CREATE TABLE orders (id INTEGER PRIMARY KEY);\r\nSELECT 1;\r\n")
    assert db.migration_status(folder, namespace="shop")[0].checksum == hashlib.sha256(
        b"CREATE TABLE orders (id INTEGER PRIMARY KEY);\nSELECT 1;\n"
    ).hexdigest()


def test_an_edited_migration_file_is_drift_named_by_its_path(db, tmp_path):
    folder = write(tmp_path / "migrations", {"0001_orders.sql": ORDERS.sql})
    db.upgrade(folder, namespace="shop")
    (folder / "0001_orders.sql").write_text(ORDERS.sql.replace("sku TEXT", "sku TEXT NOT NULL"))
    with pytest.raises(MigrationError, match=r"applied migration shop/0001_orders \(.*0001_orders.sql\) changed since"):
        db.upgrade(folder, namespace="shop")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0001_a.sql": "CREATE TABLE a (x);", "README.md": "hi"}, r"entries that are not NNNN_name.sql files: README.md"),
        ({"0001_a.sql": "CREATE TABLE a (x);", "002-b.sql": "x"}, r"not NNNN_name.sql files: 002-b.sql"),
        ({"0001_a.SQL": "CREATE TABLE a (x);"}, r"not NNNN_name.sql files: 0001_a.SQL"),
        ({"0001_a.sql": "CREATE TABLE a (x);", "0001_b.sql": "CREATE TABLE b (x);"},
         r"migrations acme/0001_a \(.*\) and acme/0001_b \(.*\) share the number 1; renumber one"),
    ],
)
def test_a_folder_with_strays_or_ambiguity_is_refused_before_anything_runs(db, tmp_path, path, files, message):
    folder = write(tmp_path / "migrations", files)
    with pytest.raises(MigrationError, match=message):
        db.upgrade(folder, namespace="acme")
    assert "a" not in tables(path)


def test_folder_problems(db, tmp_path):
    with pytest.raises(MigrationError, match=r"migrations folder .*missing does not exist or is not a folder"):
        db.upgrade(tmp_path / "missing", namespace="acme")
    with pytest.raises(MigrationError, match=r"upgrading from the folder .*migrations needs namespace="):
        db.upgrade(tmp_path / "migrations")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "0001_latin1.sql").write_bytes(b"-- caf\xe9\nCREATE TABLE t (x);")
    with pytest.raises(MigrationError, match=r"cannot read migration .*0001_latin1.sql: 'utf-8' codec can't decode"):
        db.upgrade(tmp_path / "bad", namespace="acme")


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("shop", "orders", "x"), MigrationError, r"migration id 'orders' in namespace 'shop' is not NNNN_name"),
        (("shop", "0001", "x"), MigrationError, r"migration id '0001' in namespace 'shop' is not NNNN_name"),
        (("shop", "0001_a b", "x"), MigrationError, r"is not NNNN_name"),
        (("", "0001_a", "x"), MigrationError, r"migration namespace '' is not valid"),
        (("../etc", "0001_a", "x"), MigrationError, r"migration namespace '../etc' is not valid"),
        (("shop", 1, "x"), TypeError, r"Migration id must be a str, not int"),
        (("shop", "0001_a", b"x"), TypeError, r"Migration sql must be a str, not bytes"),
    ],
)
def test_malformed_migrations_are_refused(args, error, message):
    with pytest.raises(error, match=message):
        Migration(*args)


def test_upgrade_checks_its_arguments(db):
    with pytest.raises(TypeError, match=r"expected Migration objects, got str: 'CREATE TABLE x \(y\)'"):
        db.upgrade(["CREATE TABLE x (y)"])
    with pytest.raises(TypeError, match=r"migrations must be a folder or an iterable of Migration, not int"):
        db.upgrade(3)
    with db.session():
        with pytest.raises(MigrationError, match=r"upgrade\(\) of .* inside a session: each migration runs in its own transaction"):
            db.upgrade([ORDERS])


def test_a_single_migration_object_is_accepted(db):
    assert db.upgrade(ORDERS) == ["0001_orders"]


# ---------------------------------------------------------------- two processes

MANY = [
    Migration("race", f"{n:04d}_step", f"CREATE TABLE step_{n} (id INTEGER PRIMARY KEY);\nINSERT INTO step_{n} DEFAULT VALUES;")
    for n in range(1, 9)
]


def upgrade_worker(path, events):
    """Run in a spawned process: upgrade, saying when the pending migrations have been read.

    Every outcome goes to ``events``: ("waiting", pid) once upgrade() has read
    what is pending and goes for the write lock, then ("applied", ids), or
    ("error", traceback) before exiting non-zero.
    """
    try:
        with connect(path) as db:
            begin = db.session

            def session():  # upgrade() reads the status, then opens its first session
                if not told:
                    told.append(True)
                    events.put(("waiting", os.getpid()))
                return begin()

            told = []
            db.session = session
            events.put(("applied", db.upgrade(MANY)))
    except BaseException:
        events.put(("error", traceback.format_exc()))
        raise


def test_two_processes_upgrading_at_once_apply_each_migration_once(path):
    connect(path).close()  # create the file (and WAL mode) before the race
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    workers = [context.Process(target=upgrade_worker, args=(path, events)) for _ in range(2)]
    with closing(sqlite3.connect(path, isolation_level=None)) as holder:
        # Hold the write lock until both workers have read the status: both
        # see every migration pending, then race for each one.
        holder.execute("BEGIN IMMEDIATE")
        try:
            for worker in workers:
                worker.start()
            waiting = []
            while len(waiting) < 2:
                kind, detail = events.get(timeout=60)
                assert kind == "waiting", detail
                waiting.append(detail)
            assert sorted(waiting) == sorted(w.pid for w in workers)
            holder.execute("ROLLBACK")
            for worker in workers:
                worker.join(timeout=60)
            outcomes = [events.get(timeout=10) for _ in workers]
            assert [w.exitcode for w in workers] == [0, 0], outcomes
        finally:
            if holder.in_transaction:
                holder.execute("ROLLBACK")
            for worker in workers:
                if worker.is_alive():
                    worker.terminate()
                    worker.join(timeout=10)
    assert [kind for kind, _ in outcomes] == ["applied", "applied"], outcomes
    applied = [ids for _, ids in outcomes]
    assert sorted(applied[0] + applied[1]) == [m.id for m in MANY]
    assert len(records(path)) == len(MANY)
    with closing(sqlite3.connect(path)) as raw:
        for n in range(1, 9):
            assert raw.execute(f"SELECT count(*) FROM step_{n}").fetchone() == (1,)


def test_a_table_can_be_rebuilt_while_others_reference_it(db):
    db.upgrade([ORDERS, ITEMS])
    order = db.create("orders", {"sku": "a"})
    db.create("items", {"order_id": order})
    rebuild = Migration("shop", "0003_rebuild_orders", """
        CREATE TABLE orders_new (id INTEGER PRIMARY KEY, sku TEXT NOT NULL);
        INSERT INTO orders_new (id, sku) SELECT id, sku FROM orders;
        DROP TABLE orders;
        ALTER TABLE orders_new RENAME TO orders;
    """)
    assert db.upgrade([rebuild]) == ["0003_rebuild_orders"]
    assert db.read("orders") == [{"id": order, "sku": "a"}]


def test_a_migration_that_breaks_foreign_keys_is_rolled_back(db, path):
    db.upgrade([ORDERS, ITEMS])
    order = db.create("orders", {"sku": "a"})
    db.create("items", {"order_id": order})
    orphaning = Migration("shop", "0003_orphans", "DELETE FROM orders; CREATE TABLE marker (x);")
    with pytest.raises(
        MigrationError,
        match=r"migration shop/0003_orphans leaves 1 row\(s\) in .* breaking foreign keys \(first: table items, "
        r"rowid 1, references orders\); nothing of it was applied",
    ):
        db.upgrade([orphaning])
    assert len(db.read("orders")) == 1
    assert "marker" not in tables(path)


def test_upgrade_with_nothing_pending_takes_no_write_lock(db, path):
    db.upgrade([ORDERS])
    with closing(sqlite3.connect(path, isolation_level=None)) as holder, connect(path, timeout=0.1) as quick:
        holder.execute("BEGIN IMMEDIATE")
        try:
            assert quick.upgrade([ORDERS]) == []  # DatabaseLocked after 0.1 s if it took the lock
        finally:
            holder.execute("ROLLBACK")
