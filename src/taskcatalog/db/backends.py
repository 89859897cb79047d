"""``connect(url)``: find the backend for a URL's scheme and open it.

Backends are classes registered under the entry-point group
``taskcatalog.databases``, the entry-point name being the URL scheme
(``sqlite = taskcatalog.db.sqlite:SQLiteConnection``). A plain path or
``:memory:`` means SQLite. The built-in backends, SQLite and PostgreSQL
(``postgresql://`` and ``postgres://``, whose driver is an optional extra),
also work from a source checkout with no installed metadata.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from importlib.metadata import entry_points
from os import PathLike, fspath
from typing import Any

from ..errors import DatabaseError, UnknownBackend
from .base import Connection
from .sqlite import SQLiteConnection

__all__ = ["connect", "backend"]

GROUP = "taskcatalog.databases"
#: The schemes of the PostgreSQL backend shipped in this distribution (``taskcatalog.db.postgres``).
BUILTIN_POSTGRES = ("postgresql", "postgres")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def _scheme_of(url: str | PathLike[str]) -> str:
    """The backend name a URL asks for: its scheme, or ``sqlite`` for a path."""
    if isinstance(url, PathLike):
        return "sqlite"
    if not isinstance(url, str):
        raise TypeError(f"a database URL or path must be a str or path, not {type(url).__name__}")
    match = _SCHEME.match(url)
    # "C:\\data\\x.db" has a one-letter "scheme": a Windows drive, so a path.
    if match is None or len(match.group(1)) == 1 or (match.group(1) != "sqlite" and "://" not in url):
        return "sqlite"
    return match.group(1).lower()


def backend(scheme: str) -> type[Connection]:
    """The Connection class registered for ``scheme``.

    Reading entry points scans every distribution on ``sys.path`` (about half
    a millisecond with a dozen installed, more with more), so the answer is
    cached per value of ``sys.path``: adding a folder to it finds backends
    installed there. A backend installed into a folder already on
    ``sys.path`` while the process runs is found after
    ``backend.cache_clear()``. Failures are not cached.
    """
    return _backend(scheme, tuple(sys.path))


@lru_cache(maxsize=32)
def _backend(scheme: str, search_path: tuple[str, ...]) -> type[Connection]:
    """``backend()``'s lookup; ``search_path`` (the sys.path it ran under) is only the cache key."""
    found = entry_points(group=GROUP).select(name=scheme)
    for entry in found:
        try:
            cls = entry.load()
        except Exception as exc:
            raise DatabaseError(
                f"the database backend {scheme!r} ({entry.value}) failed to import: {exc}"
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, Connection)):
            raise DatabaseError(f"the database backend {scheme!r} ({entry.value}) is not a Connection class")
        return cls
    # A source checkout without installed metadata still has the built-in backends.
    if scheme == "sqlite":
        return SQLiteConnection
    if scheme in BUILTIN_POSTGRES:
        from .postgres import PostgresConnection  # its driver is imported only when a database is opened

        return PostgresConnection
    known = sorted({entry.name for entry in entry_points(group=GROUP)} | {"sqlite", *BUILTIN_POSTGRES})
    raise UnknownBackend(f"no database backend for the scheme {scheme!r}; known schemes: {', '.join(known)}")


backend.cache_clear = _backend.cache_clear  # type: ignore[attr-defined]


def connect(url: str | PathLike[str], **options: Any) -> Connection:
    """Open the database at ``url`` with the backend its scheme names.

    ``url`` is a path, ``:memory:``, ``sqlite:///relative/path``,
    ``sqlite:////absolute/path``, ``sqlite:///:memory:``,
    ``postgresql://user@host:port/database`` (or ``postgres://``) or another
    backend's URL. ``options`` go to the backend (for SQLite: ``timeout``,
    ``synchronous``, ``foreign_keys``; for PostgreSQL: ``timeout``,
    ``connect_timeout``).
    """
    cls = backend(_scheme_of(url))
    return cls(fspath(url) if isinstance(url, PathLike) else url, **options)
