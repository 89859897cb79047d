"""The driver (psycopg 3, imported only when a PostgreSQL database is opened), URLs, and opening one connection.

``Settings`` is what a ``PostgresConnection`` was asked for: the URL, how
messages name it (the URL without its password or query), the lock timeout
and the connect timeout. ``open_connection`` turns it into a configured
``psycopg.Connection``: autocommit (the backend issues BEGIN and COMMIT
itself, as on SQLite) and ``lock_timeout``, the PostgreSQL setting closest
to SQLite's busy timeout. A server that cannot be reached, a database that
does not exist, a refused login: one ``DatabaseError`` line naming the
database, at connect time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ...errors import DatabaseError

if TYPE_CHECKING:
    import psycopg

__all__ = ["EXTRA", "SCHEMES", "Settings", "driver", "first_line", "open_connection", "settings"]

#: What to install for the driver.
EXTRA = "pip install 'taskcatalog[postgres]'"
#: The URL schemes of this backend (libpq reads both).
SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True, slots=True)
class Settings:
    """How to open the database: its URL, how messages name it, and the options."""

    url: str
    label: str
    timeout: float
    connect_timeout: float


#: The longest name PostgreSQL keeps, in bytes (NAMEDATALEN - 1); it cuts longer ones.
NAME_BYTES = 63


def settings(url: str, timeout: float, connect_timeout: float) -> Settings:
    """Check a PostgreSQL URL and the options; ValueError for what cannot be used."""
    if not isinstance(url, str):
        raise TypeError(f"a PostgreSQL URL must be a str, not {type(url).__name__}")
    for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
            raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"cannot read the PostgreSQL URL {_without_password(url)!r}: {exc}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError(f"{_without_password(url)!r} is not a PostgreSQL URL (postgresql://user@host:port/database)")
    # Messages name the database without its password (or query options).
    user = f"{parts.username}@" if parts.username else ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    label = f"{parts.scheme}://{user}{host}{'' if port is None else f':{port}'}{parts.path}"
    database = unquote(parts.path.lstrip("/"))
    if len(database.encode()) > NAME_BYTES:
        # The server would cut the name and open another database: two customers' names
        # alike in their first 63 bytes would share one.
        raise ValueError(
            f"the database name in {label!r} is {len(database.encode())} bytes long; PostgreSQL keeps names of "
            f"at most {NAME_BYTES} bytes and would open the database its first {NAME_BYTES} bytes name"
        )
    return Settings(url, label, float(timeout), float(connect_timeout))


def _without_password(url: str) -> str:
    head, at, tail = url.rpartition("@")
    if not at or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':', 1)[0]}@{tail}"


def driver(label: str) -> ModuleType:
    """The psycopg module; DatabaseError in one line saying what to install when it cannot load."""
    try:
        import psycopg
    except ImportError as exc:
        if exc.name == "psycopg":
            raise DatabaseError(
                f"{label} needs the PostgreSQL driver psycopg 3, which is not installed: {EXTRA}", path=label
            ) from exc
        # psycopg is there, but none of its implementations loads: the pure
        # Python one needs libpq, the PostgreSQL client library.
        raise DatabaseError(
            f"{label}: psycopg is installed but cannot load libpq, the PostgreSQL client library "
            f"({first_line(str(exc))}); install it (Debian: apt-get install libpq5) "
            f"or the self-contained build: pip install 'psycopg[binary]'",
            path=label,
        ) from exc
    return psycopg


def first_line(message: str) -> str:
    """The first line of a server or libpq message (the rest is LINE/DETAIL/HINT context)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[0] if lines else message


def _connect_message(exc: BaseException) -> str:
    """libpq's connection failure as one line ("connection failed: ...\\n\\tIs the server running ...")."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    for prefix in ("connection failed: ", "connection is bad: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text.replace("FATAL:  ", "").replace(" Is the server", "; is the server")


def open_connection(settings: Settings) -> psycopg.Connection[Any]:
    """A new psycopg connection in autocommit mode with the lock timeout set."""
    pg = driver(settings.label)
    try:
        # libpq counts the connect timeout in whole seconds (and treats 1 as 2).
        conn: psycopg.Connection[Any] = pg.connect(
            settings.url, autocommit=True, connect_timeout=max(1, math.ceil(settings.connect_timeout))
        )
    except pg.Error as exc:
        raise DatabaseError(f"cannot connect to {settings.label}: {_connect_message(exc)}", path=settings.label) from exc
    try:
        # PostgreSQL's lock_timeout: how long a statement waits for a lock
        # another connection holds (0 would mean forever: 1 ms is "at once").
        milliseconds = max(1, round(settings.timeout * 1000))
        conn.execute("SELECT set_config('lock_timeout', %s, false)", [f"{milliseconds}ms"])
    except BaseException as exc:
        conn.close()
        if isinstance(exc, pg.Error):
            raise DatabaseError(
                f"cannot set up the connection to {settings.label}: {first_line(str(exc))}", path=settings.label
            ) from exc
        raise
    return conn
