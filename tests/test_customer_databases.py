"""Each customer's own database (DESIGN 2.5, 2.8): ``ctx.db``, opened from the
``customer_database`` template on first use, with the customer's migrations
from ``plugins/<customer>/migrations/`` applied then, once per process."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import uuid
from pathlib import Path

import pytest

from conftest import read_only
from db_engines import POSTGRES, _with_database
from taskcatalog import Catalog, CatalogError, Context, DatabaseError, InvalidName, MigrationError, PluginError

NOTES = """
    from taskcatalog import slot

    @slot("save", args={"text": str}, returns=int)
    def notes_entrypoint_v1(ctx, text: str):
        found, row = ctx.plugins.call("save", text=text)
        if not found:
            row = ctx.db.create("notes", {"text": text})
        return {"row": row, "texts": [r["text"] for r in ctx.db.read("notes", order_by="id")], "label": ctx.db.label}

    def notes_entrypoint_v2(ctx, text: str):
        return ctx.call("notes", 1, text=text)

    def notes_entrypoint_v3(ctx):
        return ctx.db
"""

SAVE = """
    from taskcatalog import plugin_config

    @plugin_config(version=1, slot="save")
    def save(ctx, text: str) -> int:
        return ctx.db.create("notes", {"text": ctx.customer + ":" + text})
"""

TABLE = "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);\n"


@pytest.fixture
def notes(layout):
    layout.interface("notes", NOTES)
    layout.plugin("acme", "notes", SAVE)
    for customer in ("acme", "globex"):
        layout.write(f"plugins/{customer}/migrations/0001_notes.sql", TABLE)
    return layout


def template_in(root: Path) -> str:
    return str(root / "var" / "customers" / "{customer}.sqlite3")


@pytest.fixture
def catalog(notes):
    catalog = notes.catalog(customer_database=template_in(notes.root))
    yield catalog
    catalog.close()


def rows_in(path: Path) -> list[str]:
    """The notes in a database file, read with plain sqlite3."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [text for (text,) in db.execute("SELECT text FROM notes ORDER BY id")]


def files_under(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def test_ctx_db_is_the_calling_customers_own_database(catalog, notes):
    folder = notes.root / "var" / "customers"
    assert not folder.exists()
    acme = catalog.call("notes", 1, Context("acme"), text="a")  # its plugin writes
    globex = catalog.call("notes", 1, {"customer": "globex"}, text="g")  # the entrypoint writes
    assert acme == {"row": 1, "texts": ["acme:a"], "label": str(folder / "acme.sqlite3")}
    assert globex == {"row": 1, "texts": ["g"], "label": str(folder / "globex.sqlite3")}
    # A nested call runs for the same customer, so on the same database.
    assert catalog.call("notes", 2, Context("globex"), text="nested")["texts"] == ["g", "nested"]
    assert catalog.call("notes", 2, Context("acme"), text="b")["texts"] == ["acme:a", "acme:b"]
    assert rows_in(folder / "acme.sqlite3") == ["acme:a", "acme:b"]
    assert rows_in(folder / "globex.sqlite3") == ["g", "nested"]
    db = catalog.customer_database("acme")
    assert catalog.call("notes", 3, Context("acme")) is db  # the one connection per customer
    assert [row["text"] for row in db.read("notes")] == ["acme:a", "acme:b"]


def test_ctx_db_is_none_without_a_template_or_a_customer(notes, catalog):
    assert catalog.call("notes", 3, None) is None
    plain = notes.catalog()
    try:
        assert plain.call("notes", 3, Context("acme")) is None
        assert plain.customer_database("acme") is None
        with pytest.raises(AttributeError):
            plain.call("notes", 1, Context("globex"), text="x")  # None has no create()
    finally:
        plain.close()
    assert not (notes.root / "var").exists()


def test_migrations_apply_when_the_database_is_first_opened(catalog, notes, caplog):
    with caplog.at_level(logging.INFO, logger="taskcatalog.db"):
        catalog.call("notes", 1, Context("acme"), text="a")
        catalog.call("notes", 1, Context("acme"), text="b")
    applied = [r.getMessage() for r in caplog.records if r.getMessage().startswith("customer acme: applied")]
    folder = notes.plugins / "acme" / "migrations"
    assert applied == [f"customer acme: applied migrations 0001_notes from {folder}"]  # once
    [status] = catalog.customer_database("acme").migration_status(namespace="acme")
    assert (status.namespace, status.id, status.state) == ("acme", "0001_notes", "applied")
    assert catalog.customer_database("globex").migration_status(namespace="acme") == []  # its own only

    # Applied on first open in a process: a migration added later waits for
    # the next process (here: the next catalog) to open the database.
    notes.write("plugins/acme/migrations/0002_tags.sql", "ALTER TABLE notes ADD COLUMN tag TEXT;\n")
    catalog.reload()
    db = catalog.customer_database("acme")
    assert [(s.id, s.state) for s in db.migration_status(folder, namespace="acme")] == [
        ("0001_notes", "applied"), ("0002_tags", "pending")
    ]
    later = notes.catalog(customer_database=template_in(notes.root))
    try:
        assert later.call("notes", 1, Context("acme"), text="c")["texts"] == ["acme:a", "acme:b", "acme:c"]
        assert [s.id for s in later.customer_database("acme").migration_status(namespace="acme")] == [
            "0001_notes", "0002_tags"
        ]
    finally:
        later.close()


def test_a_failing_migration_fails_that_customer_only_until_fixed_and_reloaded(catalog, notes, caplog):
    broken = notes.write("plugins/broken/migrations/0001_notes.sql", "CREATE TABLE notes (id INTEGER PRIMARY KEY,;\n")
    database = notes.root / "var" / "customers" / "broken.sqlite3"
    with caplog.at_level(logging.ERROR, logger="taskcatalog.db"):
        for _ in range(2):  # the failure is remembered: the same error, not a second try
            with pytest.raises(MigrationError) as info:
                catalog.call("notes", 1, Context("broken"), text="x")
            error = info.value
            assert str(error).startswith(
                f"customer 'broken': its database {database} could not be brought up to date: "
                f"migration broken/0001_notes ({broken}) failed at statement 1 of 1 ({broken}:1) on {database}: "
            )
            assert "nothing of it was applied" in str(error)
            assert (error.customer, error.path, error.line) == ("broken", str(broken), 1)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [str(error)]  # logged once
    with contextlib.closing(sqlite3.connect(database)) as db:  # nothing of it left behind
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'notes'").fetchall() == []
    # Other customers are unaffected.
    assert catalog.call("notes", 1, Context("globex"), text="g")["texts"] == ["g"]

    notes.write("plugins/broken/migrations/0001_notes.sql", TABLE)
    with pytest.raises(MigrationError):  # fixed on disk, but the failure stands until a reload
        catalog.call("notes", 1, Context("broken"), text="x")
    catalog.reload()
    assert catalog.call("notes", 1, Context("broken"), text="x")["texts"] == ["x"]
    [status] = catalog.customer_database("broken").migration_status(namespace="broken")
    assert status.state == "applied"


@pytest.mark.parametrize("customer", ["../evil", "..", ".", "a/b", "a\\b", "", "-x", "x" * 65])
def test_a_customer_name_that_would_escape_the_folder_never_reaches_the_file_system(catalog, notes, customer):
    before = files_under(notes.root)
    message = f"invalid customer name {customer!r}"
    with pytest.raises(InvalidName) as info:
        catalog.customer_database(customer)
    assert str(info.value).startswith(message)
    with pytest.raises(InvalidName) as info:
        catalog.call("notes", 1, {"customer": customer}, text="x")
    assert str(info.value).startswith(message)
    with pytest.raises(InvalidName):
        Context(customer)
    assert isinstance(info.value, ValueError) and isinstance(info.value, CatalogError)
    assert files_under(notes.root) == before


def test_a_customer_database_linked_outside_the_folder_is_refused(catalog, notes, tmp_path):
    folder = notes.root / "var" / "customers"
    folder.mkdir(parents=True)
    outside = tmp_path / "elsewhere" / "evil.sqlite3"
    outside.parent.mkdir()
    os.symlink(outside, folder / "evil.sqlite3")
    with pytest.raises(InvalidName) as info:
        catalog.call("notes", 1, Context("evil"), text="x")
    assert str(info.value) == (
        f"customer 'evil': its database {outside} would lie outside {folder}, "
        f"the folder of the template {template_in(notes.root)!r}"
    )
    assert info.value.customer == "evil"
    assert not outside.exists()
    assert catalog.call("notes", 1, Context("globex"), text="g")["texts"] == ["g"]


def test_close_closes_every_customer_database(notes):
    catalog = notes.catalog(customer_database=template_in(notes.root))
    catalog.call("notes", 1, Context("acme"), text="a")
    catalog.call("notes", 1, Context("globex"), text="g")
    opened = [catalog.customer_database("acme"), catalog.customer_database("globex")]
    catalog.close()
    for db in opened:
        assert repr(db).endswith(" closed>")
        with pytest.raises(DatabaseError) as info:
            db.read("notes")
        assert str(info.value) == f"the connection to {db.label} is closed"
    with pytest.raises(CatalogError, match=r"^Catalog\(.*\) is closed$"):
        catalog.customer_database("acme")


@pytest.mark.parametrize("template", ["var/customers.sqlite3", "var/{name}.sqlite3", Path("var/{customer}.sqlite3")])
def test_a_template_must_name_the_customer(notes, template):
    with pytest.raises(ValueError) as info:
        notes.catalog(customer_database=template)
    assert str(info.value) == f"customer_database must be a path or URL template containing {{customer}}, not {template!r}"


CONFIG = """
[catalog]
interfaces = ["interfaces"]
plugins = ["plugins"]
database = "var/catalog.sqlite3"
customer_database = "var/customers/{{customer}}.sqlite3"
{extra}

[customers.acme.versions]
notes = 1
"""


@pytest.mark.parametrize("extra", ["retention_days = 7", "telemetry = false"])
def test_from_config_opens_both_scopes_of_database(notes, tmp_path, monkeypatch, extra):
    config = notes.root / "taskcatalog.toml"
    config.write_text(CONFIG.format(extra=extra))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths are relative to the file, not the working folder
    catalog = Catalog.from_config(config)
    try:
        var = notes.root / "var"
        assert Path(catalog.database.label) == var / "catalog.sqlite3"
        # acme is pinned to v1; version=None gets the pin.
        assert catalog.call("notes", None, Context("acme"), text="a") == {
            "row": 1, "texts": ["acme:a"], "label": str(var / "customers" / "acme.sqlite3")
        }
        assert catalog.call("notes", None, Context("globex")).label == str(var / "customers" / "globex.sqlite3")
        if extra == "telemetry = false":
            with pytest.raises(CatalogError, match=r"^telemetry is off for this catalog"):
                catalog.stats()
        else:
            assert catalog._telemetry.retention == 7 * 86400
            assert [(s.interface, s.version, s.customer) for s in catalog.stats()] == [
                ("notes", 1, "acme"), ("notes", 3, "globex")
            ]
    finally:
        catalog.close()
    assert not re.search(r"var", " ".join(os.listdir(elsewhere)))


def test_a_database_that_cannot_be_opened_fails_that_customer_only(notes, caplog):
    blocker = notes.root / "var" / "blocker"
    blocker.parent.mkdir()
    blocker.write_text("a file where the customers' folders would go")
    catalog = notes.catalog(customer_database=str(blocker / "{customer}" / "notes.sqlite3"))
    try:
        with caplog.at_level(logging.ERROR, logger="taskcatalog.db"):
            with pytest.raises(DatabaseError) as info:
                catalog.call("notes", 1, Context("globex"), text="g")  # the entrypoint reads ctx.db
            with pytest.raises(PluginError) as plugin:
                catalog.call("notes", 1, Context("acme"), text="a")  # acme's plugin does
        assert str(info.value).startswith(f"cannot create the folder {blocker / 'globex'} for the database ")
        assert type(plugin.value.__cause__) is DatabaseError
        assert str(plugin.value.__cause__).startswith(f"cannot create the folder {blocker / 'acme'} ")
        assert [r.getMessage() for r in caplog.records] == [
            f"customer 'globex': {info.value}", f"customer 'acme': {plugin.value.__cause__}"
        ]
        assert catalog.call("notes", 3, None) is None  # a call without a customer needs no database
    finally:
        catalog.close()


def test_a_read_only_database_folder_fails_that_customer_only(notes, caplog):
    folder = notes.root / "var" / "acme"
    folder.mkdir(parents=True)
    catalog = notes.catalog(customer_database=str(notes.root / "var" / "{customer}" / "notes.sqlite3"))
    try:
        with read_only(folder), caplog.at_level(logging.ERROR, logger="taskcatalog.db"):
            with pytest.raises(DatabaseError) as info:
                catalog.customer_database("acme")
            assert str(info.value) == f"the folder {folder} of the database {folder / 'notes.sqlite3'} is not writable"
            with pytest.raises(PluginError) as plugin:
                catalog.call("notes", 1, Context("acme"), text="a")  # acme's plugin asks for ctx.db
            cause = plugin.value.__cause__
            assert (type(cause), str(cause)) == (DatabaseError, str(info.value))  # remembered: logged once below
            assert catalog.call("notes", 1, Context("globex"), text="g")["texts"] == ["g"]
        assert [r.getMessage() for r in caplog.records] == [f"customer 'acme': {info.value}"]
        assert list(folder.iterdir()) == []
    finally:
        catalog.close()


# -- customer databases on PostgreSQL --------------------------------------------

#: The notes table in PostgreSQL's SQL: an identity column holds the id create() returns.
POSTGRES_TABLE = "CREATE TABLE notes (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, text TEXT NOT NULL);\n"


@pytest.fixture
def customer_postgres(postgres):
    """A PostgreSQL URL template ``.../tc_<unique>_{customer}``; the databases of acme and globex
    are made first (a customer's database must exist) and dropped after."""
    import psycopg

    prefix = f"tc_{uuid.uuid4().hex[:12]}_"
    made = []
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        try:
            for customer in ("acme", "globex"):
                # As tests/db_engines.py makes its databases: template0, locale C.
                admin.execute(f'CREATE DATABASE "{prefix}{customer}" TEMPLATE template0 ENCODING \'UTF8\' LOCALE \'C\'')
                made.append(prefix + customer)
            yield _with_database(POSTGRES, prefix + "{customer}")
        finally:
            for database in made:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def notes_in(url: str) -> list[str]:
    """The notes in a PostgreSQL database, read with plain psycopg."""
    import psycopg

    with psycopg.connect(url) as conn:
        return [text for (text,) in conn.execute("SELECT text FROM notes ORDER BY id")]


def test_a_customer_database_template_may_be_a_postgres_url(notes, customer_postgres):
    template = customer_postgres
    for customer in ("acme", "globex"):  # the customers' migrations, in PostgreSQL's SQL
        notes.write(f"plugins/{customer}/migrations/0001_notes.sql", POSTGRES_TABLE)
    url = {customer: template.replace("{customer}", customer) for customer in ("acme", "globex", "initech")}
    catalog = notes.catalog(customer_database=template)
    try:
        acme = catalog.call("notes", 1, Context("acme"), text="a")  # its plugin writes
        globex = catalog.call("notes", 1, {"customer": "globex"}, text="g")  # the entrypoint writes
        assert acme == {"row": 1, "texts": ["acme:a"], "label": url["acme"]}
        assert globex == {"row": 1, "texts": ["g"], "label": url["globex"]}
        # A nested call runs for the same customer, so on the same database.
        assert catalog.call("notes", 2, Context("globex"), text="nested")["texts"] == ["g", "nested"]
        assert catalog.call("notes", 2, Context("acme"), text="b")["texts"] == ["acme:a", "acme:b"]
        assert notes_in(url["acme"]) == ["acme:a", "acme:b"]
        assert notes_in(url["globex"]) == ["g", "nested"]

        db = catalog.customer_database("acme")
        assert db.dialect == "postgresql" and catalog.call("notes", 3, Context("acme")) is db
        [status] = db.migration_status(namespace="acme")
        assert (status.namespace, status.id, status.state) == ("acme", "0001_notes", "applied")
        assert catalog.customer_database("globex").migration_status(namespace="acme") == []  # its own only

        # A customer whose database does not exist gets that error; the others carry on.
        with pytest.raises(DatabaseError) as info:
            catalog.call("notes", 1, Context("initech"), text="i")
        assert str(info.value).startswith(f"cannot connect to {url['initech']}: ")
        assert catalog.call("notes", 1, Context("globex"), text="g2")["texts"] == ["g", "nested", "g2"]
    finally:
        catalog.close()
    assert repr(db).endswith(" closed>")
