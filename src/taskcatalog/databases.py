"""The two scopes of database (DESIGN 2.8): the catalog's own, and one per customer.

The catalog database holds telemetry (and batches); it is opened with the
catalog and brought up to date with the catalog's migrations (namespace
``taskcatalog``, shipped in ``schema/<dialect>/``). A customer's database
comes from a template such as ``var/customers/{customer}.sqlite3``; it is
opened the first time a call of that customer asks for ``ctx.db`` in this
process, and the customer's own migrations
(``plugins/<customer>/migrations/NNNN_name.sql``, namespace = the customer)
are applied then. A customer whose database cannot be opened or migrated gets
that error on ``ctx.db``; the failure is remembered until the next reload, and
other customers are unaffected.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable

from .config import customer_database_for
from .db import Connection, connect
from .errors import CatalogError, MigrationError
from .naming import check_customer_name
from .routes import rescope
from .stores import catalog_dialects, catalog_migrations

__all__ = ["open_catalog_database", "CustomerDatabases"]

LOG = logging.getLogger("taskcatalog.db")


def open_catalog_database(url: str | os.PathLike[str]) -> Connection:
    """Open the catalog database (creating it and its folders) and apply the catalog's migrations."""
    db = connect(url)
    try:
        migrations = catalog_migrations(db.dialect)
        if not migrations:
            raise CatalogError(
                f"{db.label}: the catalog's own tables (telemetry, batches) exist for {', '.join(catalog_dialects())},"
                f" not for {db.dialect}; give the catalog a database of one of those"
                f" (taskcatalog.db.connect works on {db.dialect})"
            )
        applied = db.upgrade(migrations)
    except BaseException:
        db.close()
        raise
    if applied:
        LOG.info("%s: applied catalog migrations %s", db.label, ", ".join(applied))
    return db


class CustomerDatabases:
    """Each customer's own database, opened (and migrated) lazily, once per process."""

    def __init__(self, template: str, plugin_dirs: Iterable[str]) -> None:
        self.template = template
        self.plugin_dirs = tuple(plugin_dirs)
        self._open: dict[str, Connection] = {}
        self._failed: dict[str, CatalogError] = {}
        self._lock = threading.Lock()

    def get(self, customer: str) -> Connection:
        """The customer's database; raises what opening or migrating it raised."""
        db = self._open.get(customer)
        if db is not None:
            return db
        check_customer_name(customer)
        with self._lock:
            db = self._open.get(customer)
            if db is not None:
                return db
            failure = self._failed.get(customer)
            if failure is not None:
                raise rescope(failure, interface=None, version=None, customer=customer)
            try:
                db = self._open_and_migrate(customer)
            except CatalogError as exc:
                self._failed[customer] = exc
                text = str(exc)  # name the customer once: most of these messages begin with it
                LOG.error("%s", text if text.startswith(f"customer {customer!r}") else f"customer {customer!r}: {text}")
                raise
            self._open[customer] = db
            return db

    def _open_and_migrate(self, customer: str) -> Connection:
        db = connect(customer_database_for(self.template, customer))
        try:
            for folder in self._migration_folders(customer):
                applied = db.upgrade(folder, namespace=customer)
                if applied:
                    LOG.info("customer %s: applied migrations %s from %s", customer, ", ".join(applied), folder)
        except MigrationError as exc:
            db.close()
            raise MigrationError(
                f"customer {customer!r}: its database {db.label} could not be brought up to date: {exc.message}",
                customer=customer,
                path=exc.path,
                line=exc.line,
            ) from exc
        except BaseException:
            db.close()
            raise
        return db

    def _migration_folders(self, customer: str) -> list[str]:
        return [
            folder
            for plugins in self.plugin_dirs
            if os.path.isdir(folder := os.path.join(plugins, customer, "migrations"))
        ]

    def forget_failures(self) -> None:
        """Let customers whose database failed try again (a reload may have fixed their migrations)."""
        with self._lock:
            self._failed.clear()

    def close(self) -> None:
        with self._lock:
            databases = list(self._open.values())
            self._open.clear()
            self._failed.clear()
        for db in databases:
            db.close()

