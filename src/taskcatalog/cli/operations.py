"""Commands for operators: ``stats``, ``usage``, ``history`` and ``db upgrade|status|backup|wipe``."""

from __future__ import annotations

import argparse
import os

from ..config import customer_database_for, find_config, load_config
from ..copying import copy_catalog_database
from ..db import Connection, Migration, connect
from ..naming import check_customer_name
from ..stores import catalog_migrations
from .app import COMMANDS, Command, Session
from .output import PROG, Failure, table


def _filters(parser: argparse.ArgumentParser, since: bool = True) -> None:
    parser.add_argument("--interface", help="only this interface")
    parser.add_argument("--customer", help="only this customer")
    if since:
        parser.add_argument("--since", metavar="WHEN", help="only calls since WHEN (ISO 8601, e.g. 2026-11-30 or 2026-11-30T12:00)")


def _recorded(session: Session) -> bool:
    """Whether calls of other processes can be read: only from a catalog database."""
    if session.catalog.database is not None:
        return True
    print(f"{PROG}: note: this catalog has no database, so no calls are recorded between runs; "
          "set [catalog] database in taskcatalog.toml", file=session.err)
    return False


def run_stats(session: Session) -> int:
    args = session.args
    rows = session.catalog.stats(args.interface, args.customer, args.since) if _recorded(session) else []
    if session.json:
        session.emit(rows)
        return 0
    table(
        ["interface", "version", "customer", "calls", "errors", "p50 ms", "p95 ms", "max ms"],
        [[r.interface, r.version, r.customer, r.calls, r.errors, r.p50 * 1e3, r.p95 * 1e3, r.max * 1e3] for r in rows],
        session.out, empty="no calls recorded",
    )
    return 0


def run_usage(session: Session) -> int:
    args = session.args
    rows = session.catalog.usage(args.interface, args.customer) if _recorded(session) else []
    if session.json:
        session.emit(rows)
        return 0
    table(
        ["interface", "version", "customer", "calls", "first call", "last call", "deprecated", "sunset"],
        [[r.interface, r.version, r.customer, r.calls, r.first_call, r.last_call, r.deprecated, r.sunset] for r in rows],
        session.out, empty="no calls recorded",
    )
    return 0


def _add_history(parser: argparse.ArgumentParser) -> None:
    _filters(parser)
    parser.add_argument("--status", choices=("ok", "error", "skipped"), help="only calls with this outcome")
    parser.add_argument("--limit", type=int, default=20, help="how many of the newest calls (default 20)")


def run_history(session: Session) -> int:
    args = session.args
    if args.limit < 0:
        raise Failure(f"--limit must be >= 0, not {args.limit}")
    rows = (
        session.catalog.history(args.interface, args.customer, args.since, args.status, args.limit)
        if _recorded(session) else []
    )
    if session.json:
        session.emit(rows)
        return 0
    table(
        ["started", "call id", "interface", "version", "customer", "status", "ms", "plugins", "error"],
        [
            [r.started, r.call_id, r.interface, r.version, r.customer, r.status, r.duration * 1e3,
             ", ".join(f"{s.plugin}@{s.slot}" for s in r.plugins), r.error and f"{r.error_type}: {r.error}"]
            for r in rows
        ],
        session.out, empty="no calls recorded",
    )
    return 0


# -- db -------------------------------------------------------------------------------


def _add_customer(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customer", help="the customer's own database instead of the catalog database")


def _open(session: Session) -> tuple[Connection, list[Migration] | None, list[str], str | None]:
    """The database a db command works on: the catalog's (with its migrations) or a
    customer's (with its migration folders and namespace)."""
    path = find_config(session.args.config, os.environ, os.getcwd())
    if path is None:
        raise Failure("the db commands need a taskcatalog.toml naming the database (see 'taskcatalog init')")
    config = load_config(path)
    customer = getattr(session.args, "customer", None)  # db copy has no --customer
    if customer is None:
        if config.database is None:
            raise Failure(f"{path} names no database ([catalog] database)")
        db = connect(config.database)
        return db, catalog_migrations(db.dialect), [], None
    customer = check_customer_name(customer)
    if config.customer_database is None:
        raise Failure(f"{path} names no customer database template ([catalog] customer_database)")
    folders = [
        folder for plugins in config.plugins
        if os.path.isdir(folder := os.path.join(plugins, customer, "migrations"))
    ]
    return connect(customer_database_for(config.customer_database, customer)), None, folders, customer


def run_db_upgrade(session: Session) -> int:
    db, migrations, folders, namespace = _open(session)
    with db:
        applied: list[str] = []
        if migrations is not None:
            applied = db.upgrade(migrations)
        for folder in folders:
            applied += db.upgrade(folder, namespace=namespace)
        if session.json:
            session.emit({"database": db.label, "applied": applied})
        else:
            print(f"{db.label}: " + (f"applied {', '.join(applied)}" if applied else "up to date"), file=session.out)
    return 0


def run_db_status(session: Session) -> int:
    db, migrations, folders, namespace = _open(session)
    with db:
        if migrations is not None:
            states = db.migration_status(migrations)
        elif folders:
            states = [s for folder in folders for s in db.migration_status(folder, namespace=namespace)]
        else:
            states = db.migration_status(namespace=namespace)
        if session.json:
            session.emit({"database": db.label, "migrations": [
                {"namespace": s.namespace, "id": s.id, "state": s.state, "applied_at": s.applied_at} for s in states
            ]})
        else:
            print(db.label, file=session.out)
            table(["namespace", "migration", "state", "applied at"],
                  [[s.namespace, s.id, s.state, s.applied_at] for s in states], session.out, empty="no migrations")
    return 1 if any(s.state in ("pending", "drifted") for s in states) else 0


def _add_backup(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dest", help="the file to write the copy to")
    _add_customer(parser)


def run_db_backup(session: Session) -> int:
    db, _, _, _ = _open(session)
    with db:
        target = db.backup(session.args.dest)
        if session.json:
            session.emit({"database": db.label, "backup": str(target)})
        else:
            print(f"backed up {db.label} to {target}", file=session.out)
    return 0


def _add_wipe(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true", help="really delete every row (the schema stays)")
    _add_customer(parser)


def run_db_wipe(session: Session) -> int:
    db, _, _, _ = _open(session)
    with db:
        if not session.args.yes:
            raise Failure(f"refusing to wipe {db.label} without --yes; nothing was changed")
        counts = db.wipe()
        if session.json:
            session.emit({"database": db.label, "deleted": counts})
        else:
            total = sum(counts.values())
            print(f"wiped {db.label}: {total} row(s) deleted from {len(counts)} table(s)", file=session.out)
    return 0


def _add_copy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="URL", help="the database to copy into: a path or URL (postgresql://...)")


def run_db_copy(session: Session) -> int:
    db, _, _, _ = _open(session)
    with db, connect(session.args.target) as target:
        copied = copy_catalog_database(db, target)
        if session.json:
            session.emit({"database": db.label, "target": target.label, "copied": copied})
        else:
            print(f"copied {db.label} to {target.label}", file=session.out)
            table(["table", "rows"], [[name, rows] for name, rows in copied.items()], session.out)
    return 0


COMMANDS["stats"] = Command(
    "calls, errors and latency (p50, p95, max) per interface, version and customer",
    "taskcatalog stats --interface interface_a --since 2026-11-01", _filters, run_stats, recording=True,
)
COMMANDS["usage"] = Command(
    "who calls which version, first and last call, deprecations: before retiring a version",
    "taskcatalog usage --interface interface_a", lambda p: _filters(p, since=False), run_usage, recording=True,
)
COMMANDS["history"] = Command(
    "the newest call records, with their plugin runs", "taskcatalog history --status error --limit 10",
    _add_history, run_history, recording=True,
)
COMMANDS["db"] = Command(
    "the catalog database (or a customer's, with --customer): upgrade, status, backup, wipe, copy",
    "taskcatalog db status",
    subcommands={
        "upgrade": Command("apply pending migrations", "taskcatalog db upgrade --customer acme", _add_customer, run_db_upgrade),
        "status": Command("list migrations and their state (exit 1 when some are pending or drifted)",
                          "taskcatalog db status", _add_customer, run_db_status),
        "backup": Command("write a consistent copy while others keep working", "taskcatalog db backup var/copy.sqlite3",
                          _add_backup, run_db_backup),
        "wipe": Command("delete every row, keep the schema (needs --yes)", "taskcatalog db wipe --yes",
                        _add_wipe, run_db_wipe),
        "copy": Command("copy the catalog database into another (e.g. PostgreSQL): schema, then every row",
                        "taskcatalog db copy postgresql://tc@db.example/taskcatalog", _add_copy, run_db_copy),
    },
)


def _add_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="taskcatalog-report.html", metavar="FILE",
                        help="where to write the page (default: taskcatalog-report.html)")
    parser.add_argument("--since", metavar="WHEN", help="latency, errors and plugins since WHEN (default: 14 days ago)")
    parser.add_argument("--interface", help="only this interface")


def run_report(session: Session) -> int:
    args = session.args
    if os.path.isdir(args.out):
        raise Failure(f"--out {args.out} is a folder: name the file to write")
    path = session.catalog.report(args.out, args.since, args.interface)
    if session.json:
        session.emit({"report": os.path.abspath(path), "bytes": os.path.getsize(path)})
    else:
        print(f"wrote {path} ({os.path.getsize(path):,} bytes)", file=session.out)
    return 0


COMMANDS["report"] = Command(
    "one self-contained HTML page: the catalog, who calls what, latency, errors, batches",
    "taskcatalog report --out report.html --since 2026-11-01", _add_report, run_report, recording=True,
)
