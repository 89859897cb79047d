"""Migrations: order, idempotence, folders, drift, atomic failure, status, two processes."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
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
    with pytest.raises(
        MigrationError,
        match=r"(?s)migration shop/0002_bad \(migrations/0002_bad.sql\) failed at statement 3 of 3 on .*"
        r"table orders already exists; nothing of it was applied.*CREATE TABLE orders",
    ) as raised:
        db.upgrade([ORDERS, bad, QTY])
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    assert raised.value.path == "migrations/0002_bad.sql"
    assert tables(path) == ["orders", "taskcatalog_migrations"]  # no first_table
    assert [s.state for s in db.migration_status([ORDERS, bad, QTY])] == ["applied", "pending", "pending"]


def test_a_migration_cannot_control_the_transaction(db, path):
    for sql in ("BEGIN; CREATE TABLE t (x);", "CREATE TABLE t (x); COMMIT;", "CREATE TABLE t (x);\n  -- note\n end"):
        with pytest.raises(MigrationError, match=r"migration shop/0001_t controls transactions itself .*remove the statement"):
            db.upgrade([Migration("shop", "0001_t", sql)])
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


def upgrade_worker(path, barrier, results):
    """Run in a spawned process: wait for the other one, then upgrade."""
    with connect(path) as db:
        barrier.wait(timeout=60)
        results.put(db.upgrade(MANY))


def test_two_processes_upgrading_at_once_apply_each_migration_once(path):
    connect(path).close()  # create the file (and WAL mode) before the race
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [context.Process(target=upgrade_worker, args=(path, barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    applied = [results.get(timeout=60), results.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
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
    with closing(sqlite3.connect(path, isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        try:
            assert db.upgrade([ORDERS]) == []  # would wait (30 s) for the lock otherwise
        finally:
            holder.execute("ROLLBACK")
