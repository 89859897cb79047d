"""connect(): URL forms, backends found by entry point, the source-checkout fallback."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from taskcatalog.errors import CatalogError
from taskcatalog.db import Connection, DatabaseError, Migration, SQLiteConnection, UnknownBackend, connect
from taskcatalog.db import backends
from taskcatalog.db.backends import _scheme_of, backend

SRC = Path(__file__).resolve().parents[1] / "src"
SCHEMA = Migration("shop", "0001_orders", "CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT)")


def test_a_path_string_or_path_object_opens_sqlite(tmp_path):
    for target in (tmp_path / "a.sqlite3", str(tmp_path / "b.sqlite3")):
        with connect(target) as db:
            assert isinstance(db, SQLiteConnection)
            assert db.path == Path(target)
    assert (tmp_path / "a.sqlite3").is_file() and (tmp_path / "b.sqlite3").is_file()


def test_sqlite_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with connect("sqlite:///relative/r.sqlite3") as db:
        db.upgrade([SCHEMA])
    assert (tmp_path / "relative" / "r.sqlite3").is_file()
    absolute = tmp_path / "abs.sqlite3"
    with connect(f"sqlite:///{absolute}") as db:  # four slashes: sqlite:////tmp/...
        assert db.path == absolute and db.url == f"sqlite:///{absolute}"
    assert absolute.is_file()
    with connect(f"SQLite:///{absolute}") as db:
        assert db.path == absolute


@pytest.mark.parametrize("url", [":memory:", "sqlite:///:memory:", "sqlite://"])
def test_memory_databases(url):
    with connect(url) as db:
        assert db.path is None and db.label == ":memory:"
        db.upgrade([SCHEMA])
        assert db.create("orders", {"sku": "m"}) == 1
    with connect(url) as other:  # every connection has its own memory database
        assert other.migration_status() == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://host/x.db", r"cannot read the SQLite URL 'sqlite://host/x.db': use sqlite:///relative/path"),
        ("sqlite:x.db", r"cannot read the SQLite URL 'sqlite:x.db'"),
        ("sqlite:///", r"cannot read the SQLite URL 'sqlite:///'"),
        ("", r"the database path is empty"),
    ],
)
def test_malformed_sqlite_urls(url, message):
    with pytest.raises(ValueError, match=message):
        connect(url)


def test_an_unknown_scheme_lists_the_known_ones():
    with pytest.raises(UnknownBackend, match=r"no database backend for the scheme 'mysql'; known schemes: postgres, postgresql, sqlite$") as raised:
        connect("mysql://db.example/catalog")
    assert isinstance(raised.value, CatalogError) and isinstance(raised.value, ValueError)


def test_a_url_must_be_a_string_or_path():
    with pytest.raises(TypeError, match=r"a database URL or path must be a str or path, not int"):
        connect(3)


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("var/catalog.sqlite3", "sqlite"),
        ("C:\\data\\catalog.sqlite3", "sqlite"),
        ("weird:name.sqlite3", "sqlite"),
        (":memory:", "sqlite"),
        ("sqlite:///x", "sqlite"),
        ("SQLite:///x", "sqlite"),
        ("Fake+Mem://x", "fake+mem"),
        (Path("x://y"), "sqlite"),
    ],
)
def test_the_scheme_of_a_url(url, scheme):
    assert _scheme_of(url) == scheme


def test_the_installed_entry_points_name_the_builtin_backends():
    from taskcatalog.db.postgres import PostgresConnection

    assert backend("sqlite") is SQLiteConnection
    assert backend("postgresql") is backend("postgres") is PostgresConnection
    assert _scheme_of("postgresql://u@h/db") == "postgresql" and _scheme_of("Postgres://u@h/db") == "postgres"


FAKE_BACKEND = '''
from taskcatalog.db import SQLiteConnection

class FakeConnection(SQLiteConnection):
    """A second backend in one module: SQLite in memory behind a fake:// URL."""

    def __init__(self, url, **options):
        super().__init__(":memory:", **options)
        self.url = url

NOT_A_BACKEND = object()
'''


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """Install (by sys.path) a distribution declaring extra database backends."""
    (tmp_path / "fake_backend.py").write_text(FAKE_BACKEND)
    info = tmp_path / "fake_backend-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-backend\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""
        [taskcatalog.databases]
        fake = fake_backend:FakeConnection
        broken = fake_backend_missing:Nothing
        odd = fake_backend:NOT_A_BACKEND
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("fake_backend", None)


def test_a_backend_is_found_by_its_entry_point(plugin_path):
    with connect("fake://anything", timeout=1) as db:
        assert type(db).__name__ == "FakeConnection" and isinstance(db, Connection)
        assert db.url == "fake://anything" and db.timeout == 1.0
        db.upgrade([SCHEMA])
        assert db.create("orders", {"sku": "f"}) == 1
    with pytest.raises(UnknownBackend, match=r"known schemes: broken, fake, odd, postgres, postgresql, sqlite"):
        connect("nope://x")


def test_the_backend_lookup_reads_entry_points_once_per_sys_path(tmp_path, monkeypatch):
    calls = []
    real = backends.entry_points

    def counting(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(backends, "entry_points", counting)
    backend.cache_clear()
    for n in range(3):
        with connect(tmp_path / f"{n}.sqlite3"):
            pass
    assert calls == [{"group": "taskcatalog.databases"}]
    monkeypatch.syspath_prepend(str(tmp_path))  # a new folder may hold new backends
    assert backend("sqlite") is SQLiteConnection
    assert len(calls) == 2
    backend.cache_clear()  # what to call after installing into a folder already on sys.path
    assert backend("sqlite") is SQLiteConnection
    assert len(calls) == 3


def test_a_failed_lookup_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))  # sys.path stays the same from here on
    with pytest.raises(UnknownBackend, match=r"^no database backend for the scheme 'fake'; known schemes: "):
        connect("fake://x")
    (tmp_path / "fake_backend.py").write_text(FAKE_BACKEND)
    info = tmp_path / "fake_backend-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-backend\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[taskcatalog.databases]\nfake = fake_backend:FakeConnection\n")
    importlib.invalidate_caches()  # the import system's own folder caches
    try:
        with connect("fake://x") as db:
            assert type(db).__name__ == "FakeConnection"
    finally:
        sys.modules.pop("fake_backend", None)


def test_a_broken_backend_is_named(plugin_path):
    with pytest.raises(DatabaseError, match=r"the database backend 'broken' \(fake_backend_missing:Nothing\) failed to import: No module named"):
        connect("broken://x")
    with pytest.raises(DatabaseError, match=r"the database backend 'odd' \(fake_backend:NOT_A_BACKEND\) is not a Connection class"):
        connect("odd://x")


def test_a_source_checkout_without_metadata_still_gets_the_builtin_backends(tmp_path):
    # Without site-packages there is no psycopg either: a PostgreSQL URL finds
    # its backend, which says in one line which extra to install.
    checkout = tmp_path / "checkout"
    shutil.copytree(SRC / "taskcatalog", checkout / "taskcatalog", ignore=shutil.ignore_patterns("__pycache__"))
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(checkout)!r})
        from importlib.metadata import entry_points
        assert not entry_points(group="taskcatalog.databases"), "metadata leaked in"
        from taskcatalog.db import DatabaseError, connect
        with connect({str(tmp_path / "plain.sqlite3")!r}) as db:
            print(type(db).__name__)
        try:
            connect("postgresql://app@127.0.0.1:1/shop")
        except DatabaseError as error:
            print(error)
        assert "psycopg" not in sys.modules
    """)
    # -I: isolated (PYTHONPATH and user site-packages ignored); -S: no
    # site-packages, so no installed distribution metadata at all.
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "SQLiteConnection",
        "postgresql://app@127.0.0.1:1/shop needs the PostgreSQL driver psycopg 3, which is not installed: "
        "pip install 'taskcatalog[postgres]'",
    ]


def test_a_relative_path_keeps_naming_the_same_file_after_chdir(tmp_path, monkeypatch):
    import threading

    monkeypatch.chdir(tmp_path)
    with connect("var/rel.sqlite3") as db:
        assert db.label == "var/rel.sqlite3" and db.path == tmp_path / "var" / "rel.sqlite3"
        db.upgrade([SCHEMA])
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")
        thread = threading.Thread(target=db.create, args=("orders", {"sku": "from a new thread"}))
        thread.start()
        thread.join()
        assert db.read("orders") == [{"id": 1, "sku": "from a new thread"}]
    assert not (tmp_path / "elsewhere" / "var").exists()
