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
]


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


class BatchFrozen(CatalogError):
    """The batch has been executed and can no longer change or run."""


class BatchNotFound(CatalogError, LookupError):
    """No batch has that id."""
