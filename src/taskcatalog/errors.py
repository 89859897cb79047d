"""The exception hierarchy of taskcatalog.

Every error is a ``CatalogError``. Where a caller would naturally catch a
built-in category (``ValueError`` for a bad name, ``LookupError`` for
something missing, ``TypeError`` for bad arguments) the error is that too.

Errors carry the context they are about as attributes (``interface``,
``version``, ``customer``, ``path``, ``line``; None where they do not apply),
and the message names the same things for the person reading a log.
"""

from __future__ import annotations

__all__ = [
    "CatalogError",
    "InvalidName",
    "LoadError",
    "InterfaceNotFound",
    "VersionNotFound",
    "VersionRetired",
    "ArgumentError",
    "PluginError",
    "ContractError",
    "SchemaError",
    "MigrationError",
    "DatabaseError",
    "DatabaseLocked",
    "UnknownBackend",
    "BatchFrozen",
    "BatchNotFound",
    "ConfigError",
]

# How much of another error's message one of ours may quote: a plugin that
# recurses through ctx.call would otherwise nest every inner message.
BRIEF_LIMIT = 300


def location(path: str | None, line: int | None) -> str:
    """``path:line``, or ``path`` when the line is unknown: how every message names a place."""
    if path is None:
        return f"line {line}" if line else "(unknown file)"
    return f"{path}:{line}" if line else path


def brief(text: object, limit: int = BRIEF_LIMIT) -> str:
    """``str(text)`` on one line and at most ``limit`` characters, for quoting in a message.

    A ``__str__`` that raises is named rather than propagated: an error
    message must never fail to build.
    """
    try:
        value = str(text)
    except Exception as exc:  # noqa: BLE001 - any failure of a foreign __str__
        value = f"<{type(text).__name__} whose str() raised {type(exc).__name__}>"
    value = " ".join(value.split()) if "\n" in value or "\r" in value else value
    return value if len(value) <= limit else value[: limit - 1] + "\u2026"


class CatalogError(Exception):
    """Base class of every error raised by taskcatalog."""

    interface: str | None = None
    version: int | None = None
    customer: str | None = None
    path: str | None = None
    line: int | None = None

    def __init__(
        self,
        message: str,
        *,
        interface: str | None = None,
        version: int | None = None,
        customer: str | None = None,
        path: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        # Only set what was given, so the class-level None stays the default
        # and ``__dict__`` (which pickling keeps) holds just the real fields.
        for key, value in (
            ("interface", interface),
            ("version", version),
            ("customer", customer),
            ("path", path),
            ("line", line),
        ):
            if value is not None:
                setattr(self, key, value)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidName(CatalogError, ValueError):
    """A customer, interface or entrypoint name breaks the naming rules."""


class LoadError(CatalogError):
    """An interface or plugin file could not be imported."""


class InterfaceNotFound(CatalogError, LookupError):
    """No interface of that name is in the catalog."""


class VersionNotFound(CatalogError, LookupError):
    """The interface exists but not in the version asked for."""


class VersionRetired(CatalogError):
    """The version is past its sunset date."""


class ArgumentError(CatalogError, TypeError):
    """The arguments do not fit the entrypoint (checked before it runs)."""


class PluginError(CatalogError):
    """A customer's plugin is broken or raised; the original is ``__cause__``."""


class ContractError(PluginError):
    """A plugin does not fit its slot's contract (signature, slot, return type)."""


class SchemaError(CatalogError):
    """A table or column name is unknown to the database schema or malformed."""


class MigrationError(CatalogError):
    """A migration failed, or an applied migration was edited (drift)."""


class DatabaseError(CatalogError):
    """The database cannot be used: not a database, unwritable, closed, ...

    ``path`` names the database file (``":memory:"`` for a memory database).
    """


class DatabaseLocked(DatabaseError):
    """Another connection held the write lock for longer than the timeout."""


class UnknownBackend(CatalogError, ValueError):
    """No database backend is installed for the URL's scheme."""


class ConfigError(CatalogError, ValueError):
    """A configuration (``taskcatalog.toml``, or the arguments of ``Catalog``) that cannot be used.

    ``path`` names the file and ``line`` the line, where they are known.
    """


class BatchFrozen(CatalogError):
    """The batch has been executed and can no longer change or run."""


class BatchNotFound(CatalogError, LookupError):
    """No batch has that id."""
