"""Migrations: order, idempotence, folders, drift, atomic failure, status, two processes: on each engine."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import sqlite3
import traceback
from datetime import datetime, timedelta, timezone

import pytest

from taskcatalog.db import Migration, MigrationError, MigrationStatus, connect

ORDERS_SQL = "CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT)"
ITEMS_SQL = "CREATE TABLE items (id INTEGER PRIMARY KEY, order_id INTEGER REFERENCES orders(id))"
QTY_SQL = "ALTER TABLE orders ADD COLUMN qty INTEGER NOT NULL DEFAULT 0"


@pytest.fixture
def shop(engine):
    """The three migrations of namespace shop, in the engine's spelling: ORDERS, ITEMS, QTY."""
    return (
        engine.migration("shop", "0001_orders", ORDERS_SQL),
        engine.migration("shop", "0002_items", ITEMS_SQL),
        engine.migration("shop", "0010_qty", QTY_SQL),
    )


@pytest.fixture
def db(engine):
    with engine.connect("migrations") as db:
        yield db


def tables(engine):
    return engine.tables("migrations")


def records(engine):
    return engine.records("migrations")


def write(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return folder


def test_migrations_apply_in_number_order_once(db, engine, shop):
    orders, items, qty = shop
    assert db.upgrade([qty, items, orders]) == ["0001_orders", "0002_items", "0010_qty"]
    assert db.upgrade([qty, items, orders]) == []
    assert tables(engine) == ["items", "orders", "taskcatalog_migrations"]
    assert records(engine) == [("shop", m.id, m.checksum) for m in (orders, items, qty)]
    assert db.create("orders", {"sku": "a"}) == 1  # the new schema is visible at once
    assert db.read("orders") == [{"id": 1, "sku": "a", "qty": 0}]


def test_new_migrations_are_applied_later_and_old_ones_skipped(db, shop):
    orders, items, _ = shop
    assert db.upgrade([orders]) == ["0001_orders"]
    assert db.upgrade([orders, items]) == ["0002_items"]


def test_the_checksum_is_the_sha256_of_the_sql():
    orders = Migration("shop", "0001_orders", ORDERS_SQL)
    assert orders.checksum == hashlib.sha256(orders.sql.encode()).hexdigest()
    assert orders == Migration("shop", "0001_orders", orders.sql, path="elsewhere.sql")


def test_namespaces_are_independent(db, engine, shop):
    orders = shop[0]
    other = engine.migration("acme", "0001_orders_log", "CREATE TABLE acme_log (id INTEGER PRIMARY KEY)")
    assert db.upgrade([orders, other]) == ["0001_orders", "0001_orders_log"]
    assert [s.state for s in db.migration_status(namespace="acme")] == ["applied"]
    assert db.upgrade([other], namespace="acme") == []
    with pytest.raises(MigrationError, match=r"migration shop/0001_orders is not in namespace 'acme'"):
        db.upgrade([orders], namespace="acme")


def test_applied_at_is_utc(db, shop):
    before = datetime.now(timezone.utc)
    db.upgrade([shop[0]])
    (record,) = db.migration_status()
    applied = datetime.fromisoformat(record.applied_at)
    assert applied.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= applied <= datetime.now(timezone.utc)


# The same migration for each engine: statements split where they end, not
# at a ';' inside a string, a comment or a trigger's body (SQLite's BEGIN ...
# END; PostgreSQL's function, dollar-quoted).
SPLIT = {
    "sqlite": """
    -- a comment; with a semicolon
    CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);  /* another; comment */
    INSERT INTO notes (body) VALUES ('semi;colon'), ('quote''s; end');
    CREATE TABLE counts (n INTEGER);
    INSERT INTO counts VALUES (0);
    CREATE TRIGGER count_notes AFTER INSERT ON notes BEGIN
        UPDATE counts SET n = n + 1;
    END;
    INSERT INTO notes (body) VALUES ('last one, no semicolon')
    """,
    "postgres": """
    -- a comment; with a semicolon
    CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);  /* another; comment */
    INSERT INTO notes (body) VALUES ('semi;colon'), ('quote''s; end');
    CREATE TABLE counts (n INTEGER);
    INSERT INTO counts VALUES (0);
    CREATE FUNCTION count_note() RETURNS trigger LANGUAGE plpgsql AS $body$
    BEGIN
        UPDATE counts SET n = n + 1;  -- it's; a $$ inside
        RETURN NEW;
    END;
    $body$;
    CREATE TRIGGER count_notes AFTER INSERT ON notes FOR EACH ROW EXECUTE FUNCTION count_note();
    INSERT INTO notes (body) VALUES ('last one, no semicolon')
    """,
}


def test_statements_are_split_where_they_end(db, engine):
    assert db.upgrade([engine.migration("notes", "0001_notes", SPLIT[engine.name])]) == ["0001_notes"]
    assert [r["body"] for r in db.read("notes", order_by="id")] == ["semi;colon", "quote's; end", "last one, no semicolon"]
    assert db.read("counts") == [{"n": 1}]


def already_exists(engine):
    """What each engine says about a second CREATE TABLE orders, and its error class."""
    if engine.postgres:
        import psycopg

        return 'relation "orders" already exists', psycopg.errors.DuplicateTable
    return "table orders already exists", sqlite3.OperationalError


def test_a_failing_migration_leaves_nothing_of_itself(db, engine, shop):
    orders, _, qty = shop
    bad = engine.migration(
        "shop",
        "0002_bad",
        "CREATE TABLE first_table (id INTEGER);\nINSERT INTO first_table VALUES (1);\nCREATE TABLE orders (id INTEGER);",
        path="migrations/0002_bad.sql",
    )
    message, error = already_exists(engine)
    with pytest.raises(MigrationError) as raised:
        db.upgrade([orders, bad, qty])
    assert str(raised.value) == (
        f"migration shop/0002_bad (migrations/0002_bad.sql) failed at statement 3 of 3 (migrations/0002_bad.sql:3) "
        f"on {db.label}: {message}; nothing of it was applied\n  {bad.sql.splitlines()[2]}"
    )
    assert isinstance(raised.value.__cause__, error)
    assert (raised.value.path, raised.value.line) == ("migrations/0002_bad.sql", 3)
    assert tables(engine) == ["orders", "taskcatalog_migrations"]  # no first_table
    assert [s.state for s in db.migration_status([orders, bad, qty])] == ["applied", "pending", "pending"]


FAILING_FILE = """\
-- 0002_prices.sql: two statements, then one that fails

CREATE TABLE prices (sku TEXT, cents INTEGER);
INSERT INTO prices VALUES ('a', 1);  /* a comment; with a semicolon */

/* the failing one starts on line 7,
   after this comment */ INSERT INTO
    no_such_table VALUES (1);
"""


def test_a_failing_migration_names_the_file_and_line_of_its_statement(db, engine, shop, tmp_path):
    folder = write(tmp_path / "migrations", {"0001_orders.sql": shop[0].sql, "0002_prices.sql": engine.sql(FAILING_FILE)})
    with pytest.raises(MigrationError) as raised:
        db.upgrade(folder, namespace="shop")
    file = folder / "0002_prices.sql"
    why = 'relation "no_such_table" does not exist' if engine.postgres else "no such table: no_such_table"
    assert str(raised.value) == (
        f"migration shop/0002_prices ({file}) failed at statement 3 of 3 ({file}:7) on {db.label}: "
        f"{why}; nothing of it was applied\n  INSERT INTO"
    )
    assert (raised.value.path, raised.value.line) == (str(file), 7)
    assert tables(engine) == ["orders", "taskcatalog_migrations"]


def test_a_failing_migration_without_a_file_names_the_line_of_its_sql(db, engine):
    with pytest.raises(MigrationError) as raised:
        db.upgrade([engine.migration("shop", "0001_two", "CREATE TABLE a (x INTEGER);\n\n  CREATE TABLE a (y INTEGER);")])
    assert str(raised.value).startswith(f"migration shop/0001_two failed at statement 2 of 2 (line 3) on {db.label}: ")
    assert (raised.value.path, raised.value.line) == (db.label, 3)


@pytest.mark.parametrize(
    ("sql", "word", "line"),
    [
        ("BEGIN; CREATE TABLE t (x);", "BEGIN", 1),
        ("CREATE TABLE t (x); COMMIT;", "COMMIT", 1),
        ("CREATE TABLE t (x);\n  -- note\n end", "end", 3),
        ("CREATE TABLE t (x);\nSTART TRANSACTION;", "START TRANSACTION", 2),
        ("CREATE TABLE t (x);\nabort;", "abort", 2),
    ],
)
def test_a_migration_cannot_control_the_transaction(db, engine, sql, word, line):
    with pytest.raises(MigrationError) as raised:
        db.upgrade([Migration("shop", "0001_t", sql, path="m/0001_t.sql")])
    assert str(raised.value) == (
        f"migration shop/0001_t (m/0001_t.sql) controls transactions itself ({word} at m/0001_t.sql:{line}); "
        f"each migration already runs in its own transaction: remove the statement"
    )
    assert (raised.value.path, raised.value.line) == ("m/0001_t.sql", line)
    assert tables(engine) == []  # refused while reading, before the bookkeeping table exists


def test_an_empty_migration_is_refused(db):
    with pytest.raises(MigrationError, match=r"migration shop/0001_nothing has no SQL statements"):
        db.upgrade([Migration("shop", "0001_nothing", "  -- only a comment\n ; ")])


def test_drift_is_refused_and_nothing_is_applied(db, engine, shop):
    orders, items, _ = shop
    db.upgrade([orders])
    edited = Migration("shop", "0001_orders", orders.sql + " -- tweak", path="m/0001_orders.sql")
    with pytest.raises(
        MigrationError,
        match=r"applied migration shop/0001_orders \(m/0001_orders.sql\) changed since it was applied to .*"
        r"\(checksum differs\); nothing was applied",
    ):
        db.upgrade([edited, items])
    assert tables(engine) == ["orders", "taskcatalog_migrations"]
    assert [(s.id, s.state) for s in db.migration_status([edited, items])] == [
        ("0001_orders", "drifted"),
        ("0002_items", "pending"),
    ]


def test_status_reports_plain_records(db, engine, shop):
    orders, items, qty = shop
    db.upgrade([orders, items])
    gone = engine.migration("shop", "0003_gone", "CREATE TABLE gone (x INTEGER)")
    db.upgrade([gone])
    status = db.migration_status([orders, qty, Migration("shop", "0002_items", "CREATE TABLE changed (x)")])
    assert [(s.namespace, s.id, s.state) for s in status] == [
        ("shop", "0001_orders", "applied"),
        ("shop", "0002_items", "drifted"),
        ("shop", "0010_qty", "pending"),
        ("shop", "0003_gone", "missing"),
    ]
    assert all(isinstance(s, MigrationStatus) for s in status)
    assert status[0].checksum == status[0].applied_checksum == orders.checksum
    assert status[2].applied_at is None and status[3].checksum is None
    assert [s.id for s in db.migration_status()] == ["0001_orders", "0002_items", "0003_gone"]
    assert db.migration_status(namespace="nobody") == []


def test_status_of_a_new_database_is_all_pending_and_writes_nothing(engine, shop):
    with engine.connect("new") as db:
        assert [s.state for s in db.migration_status([shop[0]])] == ["pending"]
    assert engine.tables("new") == []


def test_a_folder_of_sql_files(db, shop, tmp_path):
    orders, items, _ = shop
    folder = write(tmp_path / "migrations", {
        "0002_items.sql": items.sql,
        "0001_orders.sql": orders.sql,
        ".gitkeep": "",
    })
    assert db.upgrade(folder, namespace="acme") == ["0001_orders", "0002_items"]
    assert db.upgrade(str(folder), namespace="acme") == []
    assert [(s.namespace, s.state) for s in db.migration_status(folder, namespace="acme")] == [("acme", "applied")] * 2


def test_a_windows_checkout_of_a_migration_file_is_not_drift(db, engine, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    sql = engine.sql("CREATE TABLE orders (id INTEGER PRIMARY KEY);\nCREATE INDEX o ON orders (id);\n")
    (folder / "0001_orders.sql").write_bytes(sql.replace("\n", "\r\n").encode())
    db.upgrade(folder, namespace="shop")
    (folder / "0001_orders.sql").write_bytes(sql.encode())
    assert [s.state for s in db.migration_status(folder, namespace="shop")] == ["applied"]


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_a_migration_built_in_code_with_other_line_ends_is_the_same_migration(db, engine, newline):
    lf = engine.sql("CREATE TABLE orders (id INTEGER PRIMARY KEY);\nCREATE INDEX o ON orders (id);\n")
    other = Migration("shop", "0001_orders", lf.replace("\n", newline))
    same = Migration("shop", "0001_orders", lf)
    assert other.sql == lf
    assert other.checksum == same.checksum == hashlib.sha256(lf.encode()).hexdigest()
    assert other == same
    assert db.upgrade([other]) == ["0001_orders"]
    assert [s.state for s in db.migration_status([same])] == ["applied"]
    assert db.upgrade([same]) == []


def test_line_numbers_count_every_kind_of_line_end(db, engine):
    sql = "CREATE TABLE a (x INTEGER);\r\n\r\nCREATE TABLE b (y INTEGER);\rCREATE TABLE a (z INTEGER);\n"
    with pytest.raises(MigrationError) as raised:
        db.upgrade([engine.migration("shop", "0001_mixed", sql)])
    assert raised.value.line == 4
    assert "failed at statement 3 of 3 (line 4)" in str(raised.value)


def test_a_folder_migration_keeps_the_checksum_of_its_text_with_newlines(db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_orders.sql").write_bytes(b"CREATE TABLE orders (id INTEGER PRIMARY KEY);\r\nSELECT 1;\r\n")
    assert db.migration_status(folder, namespace="shop")[0].checksum == hashlib.sha256(
        b"CREATE TABLE orders (id INTEGER PRIMARY KEY);\nSELECT 1;\n"
    ).hexdigest()


def test_an_edited_migration_file_is_drift_named_by_its_path(db, shop, tmp_path):
    folder = write(tmp_path / "migrations", {"0001_orders.sql": shop[0].sql})
    db.upgrade(folder, namespace="shop")
    (folder / "0001_orders.sql").write_text(shop[0].sql.replace("sku TEXT", "sku TEXT NOT NULL"))
    with pytest.raises(MigrationError, match=r"applied migration shop/0001_orders \(.*0001_orders.sql\) changed since"):
        db.upgrade(folder, namespace="shop")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0001_a.sql": "CREATE TABLE a (x INTEGER);", "README.md": "hi"}, r"entries that are not NNNN_name.sql files: README.md"),
        ({"0001_a.sql": "CREATE TABLE a (x INTEGER);", "002-b.sql": "x"}, r"not NNNN_name.sql files: 002-b.sql"),
        ({"0001_a.SQL": "CREATE TABLE a (x INTEGER);"}, r"not NNNN_name.sql files: 0001_a.SQL"),
        ({"0001_a.sql": "CREATE TABLE a (x INTEGER);", "0001_b.sql": "CREATE TABLE b (x INTEGER);"},
         r"migrations acme/0001_a \(.*\) and acme/0001_b \(.*\) share the number 1; renumber one"),
    ],
)
def test_a_folder_with_strays_or_ambiguity_is_refused_before_anything_runs(db, engine, tmp_path, files, message):
    folder = write(tmp_path / "migrations", files)
    with pytest.raises(MigrationError, match=message):
        db.upgrade(folder, namespace="acme")
    assert "a" not in tables(engine)


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


def test_upgrade_checks_its_arguments(db, shop):
    with pytest.raises(TypeError, match=r"expected Migration objects, got str: 'CREATE TABLE x \(y\)'"):
        db.upgrade(["CREATE TABLE x (y)"])
    with pytest.raises(TypeError, match=r"migrations must be a folder or an iterable of Migration, not int"):
        db.upgrade(3)
    with db.session():
        with pytest.raises(MigrationError, match=r"upgrade\(\) of .* inside a session: each migration runs in its own transaction"):
            db.upgrade([shop[0]])


def test_a_single_migration_object_is_accepted(db, shop):
    assert db.upgrade(shop[0]) == ["0001_orders"]


# ---------------------------------------------------------------- two processes

MANY = [
    ("race", f"{n:04d}_step", f"CREATE TABLE step_{n} (id INTEGER PRIMARY KEY);\nINSERT INTO step_{n} DEFAULT VALUES;")
    for n in range(1, 9)
]


def upgrade_worker(url, migrations, events):
    """Run in a spawned process: upgrade, saying when the pending migrations have been read.

    Every outcome goes to ``events``: ("waiting", pid) once upgrade() has read
    what is pending and goes for the lock of its first migration, then
    ("applied", ids), or ("error", traceback) before exiting non-zero.
    """
    try:
        with connect(url) as db:
            begin = db._migration_transaction

            def migration_transaction(migration):  # upgrade() reads the status, then opens this
                if not told:
                    told.append(True)
                    events.put(("waiting", os.getpid()))
                return begin(migration)

            told = []
            db._migration_transaction = migration_transaction
            events.put(("applied", db.upgrade(migrations)))
    except BaseException:
        events.put(("error", traceback.format_exc()))
        raise


def test_two_processes_upgrading_at_once_apply_each_migration_once(engine):
    url = engine.url("race")
    connect(url).close()  # create the database (SQLite: the file, in WAL mode) before the race
    migrations = [engine.migration(*m) for m in MANY]
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    workers = [context.Process(target=upgrade_worker, args=(url, migrations, events)) for _ in range(2)]
    # Hold what each migration waits for until both workers have read the
    # status: both see every migration pending, then race for each one.
    with engine.holding_migrations("race") as holder:
        try:
            for worker in workers:
                worker.start()
            waiting = []
            while len(waiting) < 2:
                kind, detail = events.get(timeout=60)
                assert kind == "waiting", detail
                waiting.append(detail)
            assert sorted(waiting) == sorted(w.pid for w in workers)
        except BaseException:
            for worker in workers:
                worker.terminate()
            raise
    try:
        for worker in workers:
            worker.join(timeout=60)
        outcomes = [events.get(timeout=10) for _ in workers]
        assert [w.exitcode for w in workers] == [0, 0], outcomes
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout=10)
    assert [kind for kind, _ in outcomes] == ["applied", "applied"], outcomes
    applied = [ids for _, ids in outcomes]
    assert sorted(applied[0] + applied[1]) == [m.id for m in migrations]
    assert len(engine.records("race")) == len(migrations)
    for n in range(1, 9):
        assert engine.query(f"SELECT count(*) FROM step_{n}", name="race") == [(1,)]


def test_a_table_can_be_rebuilt_while_others_reference_it(tmp_path):
    # SQLite only: its documented way to change a table (create new, copy,
    # drop old, rename) needs foreign keys off while a migration runs.
    # PostgreSQL changes a table in place (ALTER TABLE), and keeps enforcing.
    with connect(tmp_path / "rebuild.sqlite3") as db:
        db.upgrade([Migration("shop", "0001_orders", ORDERS_SQL), Migration("shop", "0002_items", ITEMS_SQL)])
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


def test_a_migration_that_breaks_foreign_keys_is_rolled_back(db, engine, shop):
    # SQLite checks foreign keys before the migration commits; PostgreSQL
    # refuses the statement itself. Either way nothing of it is applied.
    orders, items, _ = shop
    db.upgrade([orders, items])
    order = db.create("orders", {"sku": "a"})
    db.create("items", {"order_id": order})
    orphaning = engine.migration("shop", "0003_orphans", "DELETE FROM orders; CREATE TABLE marker (x INTEGER);")
    if engine.postgres:
        message = (
            r"migration shop/0003_orphans failed at statement 1 of 2 \(line 1\) on .*: update or delete on table "
            r'"orders" violates foreign key constraint "items_order_id_fkey" on table "items"; nothing of it was applied'
        )
    else:
        message = (
            r"migration shop/0003_orphans leaves 1 row\(s\) in .* breaking foreign keys \(first: table items, "
            r"rowid 1, references orders\); nothing of it was applied"
        )
    with pytest.raises(MigrationError, match=message):
        db.upgrade([orphaning])
    assert len(db.read("orders")) == 1
    assert "marker" not in tables(engine)


def test_upgrade_with_nothing_pending_takes_no_lock(engine, shop):
    with engine.connect("migrations") as db:
        db.upgrade([shop[0]])
    with engine.holding_migrations("migrations"), engine.connect("migrations", timeout=0.1) as quick:
        assert quick.upgrade([shop[0]]) == []  # DatabaseLocked after 0.1 s if it took the lock


def test_upgrade_waits_for_another_migration_at_most_the_timeout(engine, shop):
    from taskcatalog.db import DatabaseLocked

    with engine.connect("migrations") as db:
        db.upgrade([shop[0]])
    with engine.holding_migrations("migrations"), engine.connect("migrations", timeout=0.1) as quick:
        with pytest.raises(DatabaseLocked, match=rf"^the database {re.escape(quick.label)} is locked"):
            quick.upgrade(shop[:2])
    assert tables(engine) == ["orders", "taskcatalog_migrations"]
