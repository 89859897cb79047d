"""What only the PostgreSQL backend has, or does its own way: connecting, its values, lost
connections, prepared statements, and backup files with their way back (restore).

The contract both engines share is tested on both by the other test_db_*
files; these tests need PostgreSQL (the ``postgres`` fixture, skipped with
the reason when TASKCATALOG_TEST_POSTGRES is not set), except those about a
missing driver or an unreachable server, which need none.
"""

from __future__ import annotations

import json
import math
import re
import socket
import sqlite3
import sys
import threading
import time
from contextlib import closing
from datetime import datetime, timezone
from decimal import Decimal
from urllib.parse import urlsplit

import pytest

from taskcatalog.db import DatabaseError, Migration, MigrationError, SchemaError, connect
from taskcatalog.db.postgres import PostgresConnection

ORDERS = "CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT UNIQUE, qty INTEGER)"
#: The role that must log in with a password (.ci/postgres.sh asks it for one, scram-sha-256 over 127.0.0.1).
PASSWORD_ROLE, RIGHT_PASSWORD = "taskcatalog_password_test", "right-password"


@pytest.fixture
def db(postgres):
    with postgres.connect("pg") as db:
        db.upgrade([postgres.migration("shop", "0001_orders", ORDERS)])
        yield db


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------- connecting


def test_without_the_driver_connecting_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what `import psycopg` meets when it is not installed
    with pytest.raises(DatabaseError) as raised:
        connect("postgresql://app:secret@db.example:5433/shop")
    assert str(raised.value) == (
        "postgresql://app@db.example:5433/shop needs the PostgreSQL driver psycopg 3, which is not installed: "
        "pip install 'taskcatalog[postgres]'"
    )
    assert raised.value.path == "postgresql://app@db.example:5433/shop"


def test_a_server_that_is_not_running_is_one_line_naming_host_and_port():
    port = free_port()
    started = time.monotonic()
    with pytest.raises(DatabaseError) as raised:
        connect(f"postgresql://app:secret@127.0.0.1:{port}/shop")
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert message.startswith(f"cannot connect to postgresql://app@127.0.0.1:{port}/shop: ")
    assert "Connection refused" in message and f"port {port}" in message and "\n" not in message
    assert "secret" not in message
    assert raised.value.path == f"postgresql://app@127.0.0.1:{port}/shop"
    import psycopg

    assert isinstance(raised.value.__cause__, psycopg.OperationalError)


def test_a_server_that_does_not_answer_fails_after_the_connect_timeout():
    # A socket that listens but never speaks: the TCP connection is made (the
    # kernel's backlog), the server's greeting never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(DatabaseError) as raised:
            connect(f"postgresql://app@127.0.0.1:{port}/shop", connect_timeout=2)
        waited = time.monotonic() - started
    assert 1.5 <= waited < 10
    assert str(raised.value).startswith(f"cannot connect to postgresql://app@127.0.0.1:{port}/shop: ")
    assert "timeout" in str(raised.value) and "\n" not in str(raised.value)


def test_a_database_that_does_not_exist_is_named(postgres):
    url = postgres.url("exists").rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(DatabaseError) as raised:
        connect(url)
    assert str(raised.value).startswith(f"cannot connect to {url}: ")
    assert 'database "no_such_database" does not exist' in str(raised.value)


@pytest.fixture
def as_password_role(postgres):
    """``as_password_role(password)``: the URL of a database of the test's own (whose schema
    PASSWORD_ROLE may use), as PASSWORD_ROLE with that password.

    It creates the role through the admin URL (and drops it after, if it
    made it) rather than relying on .ci/postgres.sh to make it: then it
    also runs on a server given from outside whose pg_hba.conf asks for
    passwords (a CI service container, say). It skips, with the reason,
    when the admin may not create roles or when the server lets the role in
    without checking its password (trust authentication for it).
    """
    import psycopg

    url = postgres.url("login")
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]

    def as_role(password):
        return parts._replace(netloc=f"{PASSWORD_ROLE}:{password}@{host}").geturl()

    with postgres.raw("login") as admin:
        made = not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [PASSWORD_ROLE]).fetchall()
        try:
            admin.execute("SET password_encryption = 'scram-sha-256'")  # what the pg_hba.conf line asks for
            admin.execute(f"{'CREATE' if made else 'ALTER'} ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{RIGHT_PASSWORD}'")
        except psycopg.errors.InsufficientPrivilege as exc:
            pytest.skip(f"cannot create the role {PASSWORD_ROLE} on {postgres.url('login')}: {exc}")
        try:
            admin.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {PASSWORD_ROLE}")
            try:
                psycopg.connect(as_role("not-" + RIGHT_PASSWORD), connect_timeout=10).close()
            except psycopg.OperationalError as exc:
                if "password authentication failed" not in str(exc):
                    pytest.skip(f"the server does not let {PASSWORD_ROLE} log in with a password: {exc}")
            else:
                pytest.skip(f"the server lets {PASSWORD_ROLE} in with any password: its pg_hba.conf trusts it "
                            f"(.ci/postgres.sh asks it for one: host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256)")
            yield as_role
        finally:
            admin.execute(f"DROP OWNED BY {PASSWORD_ROLE}")  # its tables and grants in this database
            if made:
                admin.execute(f"DROP ROLE {PASSWORD_ROLE}")


def test_a_wrong_password_is_one_line_naming_host_port_and_user_without_the_password(as_password_role):
    url = as_password_role("wrong-password")
    parts = urlsplit(url)
    label = url.replace(":wrong-password@", "@")
    started = time.monotonic()
    with pytest.raises(DatabaseError) as raised:
        connect(url)
    assert time.monotonic() - started < 10
    # The label names the host as given; libpq's part the address tried (psycopg resolves host names).
    assert re.fullmatch(
        rf'cannot connect to {re.escape(label)}: connection to server at "[^"]+"( \([^)]*\))?, '
        rf'port {parts.port} failed: password authentication failed for user "{PASSWORD_ROLE}"',
        str(raised.value),
    ), str(raised.value)
    assert "wrong-password" not in str(raised.value) and raised.value.path == label
    import psycopg

    assert isinstance(raised.value.__cause__, psycopg.OperationalError)


def test_the_right_password_connects(as_password_role, postgres):
    with connect(as_password_role(RIGHT_PASSWORD)) as db:
        db.upgrade([Migration("shop", "0001_notes", "CREATE TABLE notes (body TEXT)")])
        db.create_many("notes", [{"body": "in"}])
        assert db.read("notes") == [{"body": "in"}]
        assert RIGHT_PASSWORD not in db.label and RIGHT_PASSWORD not in repr(db)
    assert postgres.query("SELECT tableowner FROM pg_tables WHERE tablename = 'notes'", name="login") == [(PASSWORD_ROLE,)]


def test_both_schemes_and_the_label_without_password_or_options(postgres):
    url = postgres.url("labels")
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    for given in (f"postgresql://{user}:secret@{host}?application_name=tc", f"postgres://{user}:secret@{host}"):
        with connect(given) as db:
            assert isinstance(db, PostgresConnection)
            assert db.label == given.split("?")[0].replace(":secret", "")
            assert repr(db) == f"<PostgresConnection {db.label} open>"
            assert db.url == given


@pytest.mark.parametrize(
    ("url", "options", "error", "message"),
    [
        ("postgresql://a@h/db", {"timeout": -1}, ValueError, r"^timeout must be a number of seconds >= 0, not -1$"),
        ("postgresql://a@h/db", {"connect_timeout": "5"}, ValueError, r"^connect_timeout must be a number of seconds >= 0, not '5'$"),
        ("postgresql://a@h/db", {"timout": 1}, TypeError, r"unexpected keyword argument 'timout'"),
        ("postgresql://a:pw@h:99999/db", {}, ValueError, r"^cannot read the PostgreSQL URL 'postgresql://a@h:99999/db': Port out of range"),
        # The server would cut the name at 63 bytes and open another database (é is 2 bytes).
        ("postgresql://a@h/" + "d" * 62 + "%C3%A9", {}, ValueError,
         r"^the database name in 'postgresql://a@h/d{62}%C3%A9' is 64 bytes long; PostgreSQL keeps names of at most "
         r"63 bytes and would open the database its first 63 bytes name$"),
    ],
)
def test_bad_options_and_urls_are_refused_before_connecting(url, options, error, message):
    with pytest.raises(error, match=message):
        connect(url, **options)


# ---------------------------------------------------------------- values


def test_values_postgresql_stores_that_sqlite_would_refuse(postgres):
    with postgres.connect("values") as db:
        db.upgrade([Migration("lab", "0001_readings", (
            "CREATE TABLE readings (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
            " value DOUBLE PRECISION, big NUMERIC, tags TEXT[], at TIMESTAMPTZ, flag BOOLEAN)"
        ))])
        at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
        rows = [
            {"value": math.nan, "big": 2**70, "tags": ["a", "b,c"], "at": at, "flag": True},
            {"value": math.inf, "big": -(2**64), "tags": [], "at": None, "flag": False},
            {"value": -0.0, "big": Decimal("1.5"), "tags": None, "at": None, "flag": None},
        ]
        for row in rows:
            db.create("readings", row)
        read = db.read("readings", order_by="id")
        assert math.isnan(read[0]["value"]) and read[1]["value"] == math.inf
        assert math.copysign(1, read[2]["value"]) == -1
        assert [r["big"] for r in read] == [2**70, -(2**64), Decimal("1.5")]
        assert [r["tags"] for r in read] == [["a", "b,c"], [], None]
        assert read[0]["at"] == at and read[0]["flag"] is True
        # NaN equals NaN in PostgreSQL; an int beyond 64 bits compares exactly.
        assert [r["id"] for r in db.read("readings", where={"value": math.nan})] == [read[0]["id"]]
        assert [r["id"] for r in db.read("readings", where={"big": ("<", -(2**63))})] == [read[1]["id"]]


def test_a_value_the_column_type_refuses_raises_the_servers_error_unchanged(db):
    import psycopg

    with pytest.raises(psycopg.errors.NumericValueOutOfRange, match=r"^bigint out of range"):
        db.create("orders", {"sku": "big", "qty": 2**63})
    with pytest.raises(psycopg.errors.DatatypeMismatch, match=r'^column "qty" is of type bigint but expression is of type boolean'):
        db.create("orders", {"sku": "bool", "qty": True})
    assert db.read("orders") == []
    assert db.read("orders", where={"qty": 2**63}) == []  # comparing is fine: no row has it


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"not": "storable"}, "psycopg has no adapter for the type 'dict'; convert the value first, for instance with json.dumps"),
        ("x\ud800y", "the str holds '\\ud800' at position 1, which UTF-8 cannot encode (surrogates not allowed); "
                     "PostgreSQL stores text as UTF-8"),
        (["fine", "nul\x00"], "an item of the list: the str holds a NUL character at position 3, which PostgreSQL "
                             "text cannot hold; remove it, or store bytes in a bytea column"),
    ],
    ids=["dict", "surrogate", "list-with-nul"],
)
def test_a_value_psycopg_cannot_send_is_a_type_error_naming_the_column(db, value, reason):
    stored = f"cannot store the value for column 'sku' of table 'orders' in {db.label}"
    with pytest.raises(TypeError) as raised:
        db.create("orders", {"sku": value})
    assert str(raised.value) == f"{stored}: {reason}"
    with pytest.raises(TypeError) as raised:
        db.create_many("orders", [{"sku": "a"}, {"sku": "b"}, {"sku": value}])
    assert str(raised.value) == f"{stored} (create_many() row 2): {reason}"
    with pytest.raises(TypeError) as raised:
        db.read("orders", where={"sku": ("=", value)})
    assert str(raised.value) == f"cannot use the value of where['sku'] for table 'orders' in {db.label}: {reason}"
    # Nothing was sent, so a session carries on.
    with db.session():
        db.create("orders", {"sku": "kept"})
        with pytest.raises(TypeError):
            db.create("orders", {"sku": value})
        db.create("orders", {"sku": "kept too"})
    assert [r["sku"] for r in db.read("orders", order_by="id")] == ["kept", "kept too"]


# ---------------------------------------------------------------- the server goes away


def terminate(postgres, name):
    """End every server process serving the database ``name`` but the caller's (as a restart would)."""
    with postgres.raw(name) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_a_dropped_connection_is_a_clear_error_and_the_next_call_connects_again(db, postgres):
    db.create("orders", {"sku": "before"})
    terminate(postgres, "pg")
    with pytest.raises(DatabaseError, match=rf"^lost the connection to {re.escape(db.label)}: .*; the next call outside a session connects again$"):
        db.read("orders")
    assert [r["sku"] for r in db.read("orders")] == ["before"]
    assert db.create("orders", {"sku": "after"}) == 2


def test_a_connection_dropped_inside_a_session_ends_the_session_and_commits_nothing(db, postgres):
    with pytest.raises(DatabaseError, match=r"^the session on .* was aborted: lost the connection to .*; nothing of the session was committed$"):
        with db.session():
            db.create("orders", {"sku": "gone"})
            terminate(postgres, "pg")
            with pytest.raises(DatabaseError, match=r"^lost the connection to "):
                db.create("orders", {"sku": "also gone"})
            with pytest.raises(DatabaseError, match=r"^this session on .* was aborted: lost the connection to "):
                db.read("orders")
    assert db.read("orders") == []
    assert db.create("orders", {"sku": "next"}) >= 1


def test_another_threads_connection_is_untouched_by_a_drop_it_did_not_meet(db, postgres):
    seen = []
    thread = threading.Thread(target=lambda: seen.append(db.read("orders")))
    thread.start()
    thread.join()
    assert seen == [[]]


# ---------------------------------------------------------------- prepared statements


def test_a_prepared_statement_over_a_changed_table_is_a_schema_error_once(db, postgres):
    # psycopg prepares a statement on the server after five runs; PostgreSQL
    # refuses to run a prepared SELECT * whose columns changed since.
    db.create("orders", {"sku": "a"})
    for _ in range(6):
        assert len(db.read("orders")) == 1
    with postgres.connect("pg") as other:
        other.upgrade([Migration("shop", "0002_note", "ALTER TABLE orders ADD COLUMN note TEXT")])
    with pytest.raises(SchemaError, match=r"^cached plan must not change result type in .* \(the schema has changed\)$"):
        db.read("orders")
    assert db.read("orders") == [{"id": 1, "sku": "a", "qty": None, "note": None}]


# ---------------------------------------------------------------- backup and restore

TYPES = """
    CREATE TABLE kinds (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        body TEXT, data BYTEA, value DOUBLE PRECISION, big NUMERIC, tags TEXT[], doc JSONB,
        at TIMESTAMPTZ, doubled BIGINT GENERATED ALWAYS AS (id * 2) STORED
    );
"""
TRIGGERED = """
    CREATE FUNCTION refuse_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'orders are frozen';
    END;
    $$;
    CREATE TRIGGER frozen BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION refuse_insert();
"""


def schema(postgres):
    return [
        postgres.migration("shop", "0001_orders", ORDERS),
        Migration("shop", "0002_kinds", TYPES),
        Migration("shop", "0003_frozen", TRIGGERED),
    ]


@pytest.fixture
def filled(postgres):
    """A database with rows of many types, then a trigger refusing new orders."""
    with postgres.connect("source") as db:
        db.upgrade(schema(postgres)[:2])
        db.create_many("orders", [{"sku": f"s{n}", "qty": n} for n in range(5)])
        db.delete("orders", {"sku": "s4"})  # so the largest id is not the last one handed out
        db.create_many("kinds", [
            {"body": "tab\there\nnewline \\ backslash \\N ünï 🚀 ", "data": bytes(range(256)), "value": math.nan,
             "big": Decimal("12345678901234567890.5"), "tags": ["a", "b c", None], "doc": json.dumps({"k": [1, None]}),
             "at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)},
            {"body": "", "data": b"", "value": -math.inf, "big": None, "tags": [], "doc": "null", "at": None},
            {"body": None, "data": None, "value": None, "big": None, "tags": None, "doc": None, "at": None},
        ])
        db.upgrade(schema(postgres))  # the trigger: no new order from now on
        yield db


def test_a_backup_restores_every_value_exactly(filled, postgres, tmp_path):
    target = filled.backup(tmp_path / "shop.backup")
    with postgres.connect("target") as restored:
        restored.upgrade(schema(postgres))
        assert restored.restore(target) == {"orders": 4, "kinds": 3}
        for table in ("orders", "kinds"):
            theirs, ours = filled.read(table, order_by="id"), restored.read(table, order_by="id")
            assert repr(ours) == repr(theirs)  # repr: NaN != NaN
        assert restored.read("kinds", where={"body": ""})[0]["tags"] == []
        # The generated column was computed again, not copied.
        assert [r["doubled"] for r in restored.read("kinds", order_by="id")] == [2, 4, 6]


def test_a_restore_moves_sequences_past_the_restored_ids_and_turns_triggers_back_on(filled, postgres, tmp_path):
    target = filled.backup(tmp_path / "shop.backup")
    with postgres.connect("target") as restored:
        restored.upgrade(schema(postgres))
        restored.restore(target)  # the trigger refuses new orders, but not the restored ones
        assert restored.create("kinds", {"body": "new"}) == 4
        import psycopg

        with pytest.raises(psycopg.errors.RaiseException, match=r"^orders are frozen"):
            restored.create("orders", {"sku": "new"})
        restored.upgrade([Migration("shop", "0004_thaw", "DROP TRIGGER frozen ON orders")])
        # s4's id 5 was deleted before the backup: the sequence starts after the largest id restored,
        # and the insert the trigger refused took 5 (sequences are not transactional).
        assert restored.create("orders", {"sku": "new"}) == 6
        assert [r["sku"] for r in restored.read("orders", order_by="id")] == ["s0", "s1", "s2", "s3", "new"]


def test_a_restore_replaces_what_the_tables_held(filled, postgres, tmp_path):
    target = filled.backup(tmp_path / "shop.backup")
    with postgres.connect("target") as restored:
        restored.upgrade(schema(postgres)[:2])
        restored.create("orders", {"sku": "mine"})
        restored.upgrade(schema(postgres)[2:])
        restored.restore(target)
        assert [r["sku"] for r in restored.read("orders", order_by="id")] == ["s0", "s1", "s2", "s3"]


def test_the_backup_file_is_text_with_a_header_each_tables_rows_and_a_trailer(filled, tmp_path):
    target = filled.backup(tmp_path / "shop.backup")
    lines = target.read_bytes().split(b"\n")
    header = json.loads(lines[0])
    assert header["format"] == "taskcatalog-backup" and header["version"] == 1 and header["engine"] == "postgresql"
    assert header["database"] == filled.label
    assert [m[:2] for m in header["migrations"]] == [["shop", "0001_orders"], ["shop", "0002_kinds"], ["shop", "0003_frozen"]]
    assert header["tables"][0] == {"name": "kinds", "columns": ["id", "body", "data", "value", "big", "tags", "doc", "at"]}
    assert json.loads(lines[-2]) == {"end": "taskcatalog-backup", "rows": {"kinds": 3, "orders": 4}}
    assert lines.count(b"\\.") == 2
    assert not list(tmp_path.glob(".shop.backup.*"))  # written beside, renamed over


def test_a_restore_into_a_database_with_other_migrations_is_refused_and_changes_nothing(filled, postgres, tmp_path):
    target = filled.backup(tmp_path / "shop.backup")
    with postgres.connect("target") as restored:
        restored.upgrade(schema(postgres)[:2] + [Migration("shop", "0009_more", "CREATE TABLE more (x INTEGER)")])
        restored.create("orders", {"sku": "mine"})
        with pytest.raises(MigrationError) as raised:
            restored.restore(target)
        assert str(raised.value) == (
            f"cannot restore {target} into {restored.label}: its migrations differ from the backup's "
            f"(not applied here: shop/0003_frozen; applied here only: shop/0009_more); restore into a database "
            f"with the same migrations applied (upgrade a new database with them first). Nothing was restored"
        )
        assert [r["sku"] for r in restored.read("orders")] == ["mine"]


def test_a_truncated_backup_is_refused_and_changes_nothing(filled, postgres, tmp_path):
    target = filled.backup(tmp_path / "shop.backup")
    whole = target.read_bytes()
    cut = tmp_path / "cut.backup"
    with postgres.connect("target") as restored:
        restored.upgrade(schema(postgres)[:2])
        restored.create("orders", {"sku": "mine"})
        restored.upgrade(schema(postgres)[2:])
        for size, why in ((len(whole) - 10, "its last line, the row counts, is missing"),
                          (whole.index(b"\\.\n") - 3, "the rows of 'kinds' stop before their end")):
            cut.write_bytes(whole[:size])
            with pytest.raises(DatabaseError) as raised:
                restored.restore(cut)
            assert str(raised.value) == f"the backup {cut} is incomplete ({why}): it was cut short; nothing was restored"
            assert [r["sku"] for r in restored.read("orders")] == ["mine"]


def test_what_is_not_a_backup_is_refused(db, tmp_path):
    sqlite_file = tmp_path / "catalog.sqlite3"
    connect(sqlite_file).close()
    with connect(sqlite_file) as lite:
        lite.upgrade([Migration("shop", "0001_orders", "CREATE TABLE orders (x)")])
    with pytest.raises(DatabaseError) as raised:
        db.restore(sqlite_file)
    assert str(raised.value) == (
        f"{sqlite_file} is a SQLite database, not a backup of a PostgreSQL one: open it with connect({str(sqlite_file)!r})"
    )
    notes = tmp_path / "notes.txt"
    notes.write_text("just notes\n")
    with pytest.raises(DatabaseError) as raised:
        db.restore(notes)
    assert str(raised.value) == f"{notes} is not a taskcatalog backup of a PostgreSQL database (its first line is not the header)"
    with pytest.raises(DatabaseError, match=r"^cannot read the backup .*missing.backup: No such file or directory$"):
        db.restore(tmp_path / "missing.backup")


def test_restore_inside_a_session_and_backup_onto_a_folder_are_refused(db, tmp_path):
    with db.session():
        with pytest.raises(DatabaseError) as raised:
            db.restore(tmp_path / "any.backup")
    assert str(raised.value) == (
        f"restore() of {db.label} inside a session: it replaces whole tables in a transaction of its own, "
        f"so call it outside any session"
    )
    with pytest.raises(DatabaseError) as raised:
        db.backup(tmp_path)
    assert str(raised.value) == f"cannot back up {db.label} to {tmp_path}: it is a folder"
    with pytest.raises(TypeError, match=r"backup\(\) path must be a str or path, not int"):
        db.backup(3)


def test_a_catalog_database_on_postgresql_gets_the_catalogs_tables_under_sqlites_names(postgres, tmp_path):
    """The catalog's own migrations exist for both engines with the same ids, and make the same
    tables (what `taskcatalog db copy` relies on); the telemetry view is there too."""
    from taskcatalog import Catalog
    from taskcatalog.stores import catalog_dialects, catalog_migrations

    assert catalog_dialects() == ["postgresql", "sqlite"]
    assert [m.id for m in catalog_migrations("postgresql")] == [m.id for m in catalog_migrations("sqlite")]
    (tmp_path / "interfaces").mkdir()
    with Catalog(tmp_path / "interfaces", [], database=postgres.url("catalog")):
        pass
    sqlite_path = tmp_path / "catalog.sqlite3"
    with Catalog(tmp_path / "interfaces", [], database=sqlite_path):
        pass
    with closing(sqlite3.connect(sqlite_path)) as conn:
        sqlite_tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'taskcatalog%' ORDER BY 1"
        )]
    assert postgres.tables("catalog") == sqlite_tables
    assert postgres.query("SELECT count(*) FROM taskcatalog_call_batches", name="catalog") == [(0,)]


def test_a_catalog_database_on_postgresql_wipes_nothing_while_a_batch_is_executed_and_restores_frozen(
    postgres, tmp_path
):
    """wipe() is one TRUNCATE on PostgreSQL, which fires no row trigger: a statement trigger refuses it
    while any batch is executed, as SQLite's row triggers refuse wipe() there. A restore replaces the
    tables anyway (user triggers off while loading), and the batches it brings back are frozen."""
    import psycopg

    from taskcatalog import BatchFrozen, Catalog

    interfaces = tmp_path / "interfaces"
    interfaces.mkdir()
    (interfaces / "double.py").write_text("def double_entrypoint_v1(ctx, x: int):\n    return 2 * x\n")
    url = postgres.url("catalog")
    with Catalog(interfaces, [], database=url) as catalog:
        catalog.batches.create("double", 1, rows=[{"x": 1}, {"x": 2}]).execute()
        saved = catalog.database.backup(tmp_path / "catalog.backup")
        with pytest.raises(psycopg.errors.RaiseException, match="^taskcatalog: this batch is executed and frozen"):
            catalog.database.wipe()
        assert catalog.batches.get(1).counts()["ok"] == 2
    with connect(postgres.url("restored")) as db:
        from taskcatalog.stores import catalog_migrations

        db.upgrade(catalog_migrations("postgresql"))
        counts = db.restore(saved)
        assert counts["taskcatalog_batch_outcomes"] == 2 and counts["taskcatalog_batches"] == 1
        assert db.restore(saved) == counts  # over executed batches too
    with Catalog(interfaces, [], database=postgres.url("restored")) as catalog:
        batch = catalog.batches.get(1)
        assert [row.value for row in batch.rows()] == [2, 4]
        with pytest.raises(BatchFrozen, match="^batch 1 is executed and frozen: it cannot take new rows$"):
            batch.add_rows([{"x": 3}])
        assert catalog.batches.create("double", 1, rows=[{"x": 5}]).id == 2
