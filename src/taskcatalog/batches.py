"""Batches: calls prepared as rows, reviewed, executed once, kept as a frozen audit trail.

A batch is many calls of one interface version for one customer, stored in
the catalog database (schema/<dialect>/0002_batches.sql, 0003_batch_claims.sql,
0005_outcome_keys.sql) before anything runs. ``execute()`` runs them as
``Catalog.run`` does. A row's outcome is one INSERT in a transaction of its
own, so it is durable as soon as it is known and a row costs one small
commit; a row without an outcome is pending. Any number of executors may run
one batch at once and no row runs twice. On SQLite they claim rows in ranges
(one transaction per range, see ``_Claim``), and the unfinished range of a
process that died (on this host) is taken over; on PostgreSQL each row is
locked (``SELECT ... FOR UPDATE SKIP LOCKED``) in the transaction that stores
its outcome, so workers on any host share it and a dead worker's row is
freed by the server (``_LockedRows``). A batch killed mid-way resumes where
it stopped: at most the row in flight runs again. Once every row has an outcome the batch is
``executed`` and frozen, in Python (``BatchFrozen``) and in the database
(triggers).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .context import Context, process_prefix
from .errors import (
    ArgumentError, BatchFrozen, BatchNotFound, CatalogError, VersionNotFound, VersionRetired, brief, location,
)
from .naming import check_customer_name, check_interface_name
from .records import utc

if TYPE_CHECKING:
    from .catalog import Catalog
    from .db import Connection

__all__ = ["Batches", "Batch", "BatchRow", "BatchProgress", "ROW_STATUSES", "BATCH_STATUSES"]

LOG = logging.getLogger("taskcatalog.batches")

ROW_STATUSES = ("pending", "ok", "error", "skipped")
BATCH_STATUSES = ("pending", "executing", "executed")
_FROZEN = "taskcatalog: this batch is executed and frozen"  # what the triggers say
ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]
_MAX_ERROR = 2000  # characters of an error message kept with its row
# An executor claims as many rows as it expects to run in about this many
# seconds (at least one, at most _MOST_CLAIMED): a claim costs a transaction,
# so cheap rows are claimed in ranges, while slow rows are claimed one at a
# time and every executor of a batch keeps busy until its end.
_CLAIM_SECONDS = 0.005
_MOST_CLAIMED = 256

# Rows change only while their batch is pending, checked in the statement that
# changes them: a check before it could race with the start of an execute().
_STILL_PENDING = "EXISTS (SELECT 1 FROM taskcatalog_batches WHERE id = ? AND status = 'pending')"
_ROW_COLUMNS = (
    "r.number, r.args, coalesce(o.status, 'pending'), o.value, o.value_is_repr, o.error_type, o.error, o.call_id,"
    " o.duration, o.finished_at"
)
_ROWS_WITH_OUTCOMES = (
    "taskcatalog_batch_rows AS r LEFT JOIN taskcatalog_batch_outcomes AS o ON o.key = r.batch * 4294967296 + r.number"
)
_NEXT_UNCLAIMED = f"""
SELECT r.number, r.args FROM {_ROWS_WITH_OUTCOMES}
WHERE r.batch = ? AND r.number > (SELECT coalesce(max(last), 0) FROM taskcatalog_batch_claims WHERE batch = ?)
  AND o.number IS NULL
ORDER BY r.number LIMIT ?
"""
_UNFINISHED_CLAIMS = f"""
SELECT c.first, c.last, c.claimed_by FROM taskcatalog_batch_claims AS c
WHERE c.batch = ? AND EXISTS (
    SELECT 1 FROM {_ROWS_WITH_OUTCOMES}
    WHERE r.batch = c.batch AND r.number BETWEEN c.first AND c.last AND o.number IS NULL
)
ORDER BY c.first
"""
_PENDING_IN_RANGE = f"""
SELECT r.number, r.args FROM {_ROWS_WITH_OUTCOMES}
WHERE r.batch = ? AND r.number BETWEEN ? AND ? AND o.number IS NULL ORDER BY r.number
"""
# Made once: json.dumps(value, allow_nan=False) builds a new encoder on every call. Stored
# arguments are this encoder's output (no surrounding whitespace), read with raw_decode.
_ENCODE = json.JSONEncoder(allow_nan=False).encode
_DECODE = json.JSONDecoder().raw_decode
# An outcome's key is batch * 2^32 + number (schema 0005_outcome_keys: SQLite's cheapest insert).
_OUTCOME = """
INSERT INTO taskcatalog_batch_outcomes
    (key, batch, number, status, value, value_is_repr, error_type, error, call_id, duration, finished_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key) DO NOTHING
"""


def _sql(db: Connection, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement written with ``?`` placeholders on ``db``, whatever its engine."""
    return db._execute(db._qmark(sql), params)


def _who(given: str | None) -> str:
    if given is not None:
        if not isinstance(given, str) or not given.strip():
            raise ValueError(f"who created or executed a batch must be a non-empty string, not {given!r}")
        return given
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name to be had (no passwd entry, no environment)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _claimer() -> str:
    """Who runs a row: host, process id and call id prefix (a reused pid has another prefix)."""
    return f"{socket.gethostname()} {os.getpid()} {process_prefix()}"


def _alive(claimer: str) -> bool:
    """Whether the process that claimed a row may still be running it.

    Only processes of this host can be checked; one elsewhere is assumed
    alive (a row of it is never taken over from here).
    """
    host, _, rest = claimer.partition(" ")
    pid_text, _, prefix = rest.partition(" ")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    pid = int(pid_text)
    if pid == os.getpid():
        return prefix == process_prefix()  # else: an earlier process that had this pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not waited for yet is a zombie: not running anything
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            return file.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


@dataclass(frozen=True, slots=True)
class BatchRow:
    """One call of a batch: its arguments and, once run, its outcome.

    ``value`` is the call's value as stored (JSON); when JSON could not hold
    it, ``value`` is its ``repr`` and ``value_is_repr`` is True.
    """

    number: int
    args: dict[str, Any]
    status: str
    value: Any = None
    value_is_repr: bool = False
    error_type: str | None = None
    error: str | None = None
    call_id: str | None = None
    duration: float | None = None
    finished_at: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number, "args": self.args, "status": self.status, "value": self.value,
            "value_is_repr": self.value_is_repr, "error_type": self.error_type, "error": self.error,
            "call_id": self.call_id, "duration": self.duration,
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """What ``execute(progress=...)`` is told after each row this executor finishes.

    ``done`` and ``errors`` count the rows finished before this executor
    started plus its own (other executors' progress since is not counted).
    """

    batch: int
    done: int
    total: int
    errors: int
    ran: int  # rows this executor ran
    elapsed: float  # seconds since this executor started


def _row(record: tuple[Any, ...]) -> BatchRow:
    number, args, status, value, is_repr, etype, error, call_id, duration, finished = record
    if value is not None and not is_repr:
        value = json.loads(value)
    return BatchRow(number, json.loads(args), status, value, bool(is_repr), etype, error, call_id, duration,
                    None if finished is None else utc(finished))


def _error_text(error: BaseException) -> str:
    """The error's message as stored with its row; an exception whose ``str()`` raises is named instead."""
    try:
        text = str(error)
    except Exception as exc:  # noqa: BLE001 - a foreign __str__ may raise anything; the row still gets its outcome
        text = f"<{type(error).__name__} whose str() raised {type(exc).__name__}>"
    return text[:_MAX_ERROR]


def _encoded_value(value: Any) -> tuple[str | None, int]:
    """The value as JSON, or as its repr (flagged) when JSON cannot hold it."""
    if value is None:
        return None, 0
    if type(value) is int:  # the commonest value, written as json writes it, without its encoder's setup
        return int.__repr__(value), 0
    try:
        return _ENCODE(value), 0
    except (TypeError, ValueError, RecursionError):
        try:
            return repr(value), 1
        except Exception as exc:  # noqa: BLE001 - a repr that raises still leaves a record
            return f"<{type(value).__name__} object; its repr() raised {type(exc).__name__}>", 1


class Batch:
    """One batch; read its state with ``status``, ``rows()``, ``counts()``; change it while pending."""

    def __init__(self, batches: Batches, header: Mapping[str, Any]) -> None:
        self._batches = batches
        self.id: int = header["id"]
        self.interface: str = header["interface"]
        self.version: int = header["version"]
        self.customer: str | None = header["customer"]
        self.description: str = header["description"]
        self.created_at = utc(header["created_at"])
        self.created_by: str = header["created_by"]

    def __repr__(self) -> str:
        return f"<Batch {self.id} {self.interface} v{self.version} customer={self.customer!r} {self.status}>"

    @property
    def _db(self) -> Connection:
        return self._batches._db

    def _header(self) -> dict[str, Any]:
        rows = _sql(
            self._db,
            "SELECT status, started_at, executed_at, executed_by FROM taskcatalog_batches WHERE id = ?", (self.id,)
        )
        if not rows:
            raise BatchNotFound(f"batch {self.id} no longer exists")
        status, started, executed, by = rows[0]
        return {"status": status, "started_at": started, "executed_at": executed, "executed_by": by}

    @property
    def status(self) -> str:
        """``pending``, ``executing`` or ``executed``."""
        return str(self._header()["status"])

    @property
    def executed_at(self) -> dt.datetime | None:
        executed = self._header()["executed_at"]
        return None if executed is None else utc(executed)

    @property
    def executed_by(self) -> str | None:
        by = self._header()["executed_by"]
        return None if by is None else str(by)

    @property
    def depends_on(self) -> list[int]:
        """The ids of the batches this one waits for."""
        rows = _sql(
            self._db,
            "SELECT depends_on FROM taskcatalog_batch_dependencies WHERE batch = ? ORDER BY depends_on", (self.id,)
        )
        return [row[0] for row in rows]

    def counts(self) -> dict[str, int]:
        """How many rows have each status (every status present, zero or not)."""
        found = dict.fromkeys(ROW_STATUSES, 0)
        for status, count in _sql(
            self._db,
            f"SELECT coalesce(o.status, 'pending'), count(*) FROM {_ROWS_WITH_OUTCOMES} WHERE r.batch = ? GROUP BY 1",
            (self.id,),
        ):
            found[status] = count
        return found

    def rows(self, status: str | None = None, offset: int = 0, limit: int | None = None) -> list[BatchRow]:
        """Rows in number order, only those with ``status`` if given; ``offset``/``limit`` page through."""
        if status is not None and status not in ROW_STATUSES:
            raise ValueError(f"status must be one of {', '.join(ROW_STATUSES)}, not {status!r}")
        for name, number in (("offset", offset), ("limit", limit)):
            if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < 0):
                raise ValueError(f"{name} must be an int >= 0, not {number!r}")
        sql = f"SELECT {_ROW_COLUMNS} FROM {_ROWS_WITH_OUTCOMES} WHERE r.batch = ?"
        params: list[Any] = [self.id]
        if status == "pending":
            sql += " AND o.number IS NULL"
        elif status is not None:
            sql += " AND o.status = ?"
            params.append(status)
        sql += " ORDER BY r.number LIMIT ? OFFSET ?"
        # No limit: SQLite reads a negative one so, PostgreSQL a NULL.
        params += [limit if limit is not None else -1 if self._db.dialect == "sqlite" else None, offset]
        return [_row(record) for record in _sql(self._db, sql, params)]

    def to_dict(self) -> dict[str, Any]:
        header = self._header()
        return {
            "id": self.id, "interface": self.interface, "version": self.version, "customer": self.customer,
            "description": self.description, "status": header["status"],
            "created_at": self.created_at.isoformat(), "created_by": self.created_by,
            "started_at": None if header["started_at"] is None else utc(header["started_at"]).isoformat(),
            "executed_at": None if header["executed_at"] is None else utc(header["executed_at"]).isoformat(),
            "executed_by": header["executed_by"], "depends_on": self.depends_on, "rows": self.counts(),
        }

    # -- changes, while pending ---------------------------------------------------------

    def _editable(self, verb: str) -> None:
        status = self.status
        if status == "executed":
            raise BatchFrozen(f"batch {self.id} is executed and frozen: it cannot {verb}")
        if status == "executing":
            raise CatalogError(f"batch {self.id} is executing: it cannot {verb}; rows change only while it is pending")

    def add_rows(self, rows: Iterable[Mapping[str, Any]]) -> list[int]:
        """Add rows (keyword arguments of one call each); return their numbers.

        Every row is checked against the entrypoint's parameters first: the
        first one it cannot take raises ArgumentError naming it, and nothing
        of this call is stored.
        """
        self._editable("take new rows")
        first = _sql(self._db, "SELECT next_number FROM taskcatalog_batches WHERE id = ?", (self.id,))[0][0]
        encoded = self._batches._checked_rows(self.interface, self.version, rows, self.customer, first=first)
        return self._batches._insert_rows(self.id, encoded)

    def update_row(self, number: int, args: Mapping[str, Any]) -> None:
        """Replace the arguments of row ``number`` (checked like added rows)."""
        self._number(number)  # before it is used to name the row in an ArgumentError
        self._editable("change a row")
        [encoded] = self._batches._checked_rows(self.interface, self.version, [args], self.customer, first=number)
        with _frozen_guard(self.id), self._db.session():
            changed = _sql(
                self._db,
                f"UPDATE taskcatalog_batch_rows SET args = ? WHERE batch = ? AND number = ? AND {_STILL_PENDING}"
                " RETURNING number", (encoded, self.id, self._number(number), self.id),
            )
        if not changed:
            self._editable("change a row")  # it started executing meanwhile
            raise LookupError(f"batch {self.id} has no row {number}")

    def remove_row(self, number: int) -> None:
        """Remove row ``number``; it is gone from ``rows()`` (numbers of the others do not change)."""
        self._editable("lose a row")
        with _frozen_guard(self.id), self._db.session():
            removed = _sql(
                self._db,
                f"DELETE FROM taskcatalog_batch_rows WHERE batch = ? AND number = ? AND {_STILL_PENDING}"
                " RETURNING number", (self.id, self._number(number), self.id),
            )
        if not removed:
            self._editable("lose a row")  # it started executing meanwhile
            raise LookupError(f"batch {self.id} has no row {number}")

    def add_dependency(self, other: Batch | int) -> None:
        """Make this batch wait for ``other`` (which must exist); a cycle is refused."""
        self._editable("take a new dependency")
        self._batches._add_dependencies(self.id, [other.id if isinstance(other, Batch) else other])

    @staticmethod
    def _number(number: int) -> int:
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValueError(f"a row number is an int >= 1, not {number!r}")
        return number

    # -- execution --------------------------------------------------------------------

    def why_not_execute(self) -> str | None:
        """None when ``execute()`` can run, else the reason it cannot yet (or ever)."""
        status = self.status
        if status == "executed":
            return f"batch {self.id} is already executed (and frozen)"
        waiting = [
            f"{other} ({state})" for other, state in _sql(
                self._db,
                "SELECT d.depends_on, b.status FROM taskcatalog_batch_dependencies AS d"
                " JOIN taskcatalog_batches AS b ON b.id = d.depends_on"
                " WHERE d.batch = ? AND b.status != 'executed' ORDER BY d.depends_on", (self.id,)
            )
        ]
        if waiting:
            return f"batch {self.id} depends on batches not executed yet: {', '.join(waiting)}"
        try:
            self._batches._entrypoint(self.interface, self.version)
        except CatalogError as exc:
            return f"batch {self.id} cannot run {self.interface} v{self.version}: {brief(exc, 500)}"
        return None

    def execute(
        self, progress: Callable[[BatchProgress], Any] | None = None, executed_by: str | None = None
    ) -> dict[str, int]:
        """Run the pending rows (with any other executors of this batch); return the row counts.

        Returns when no pending row is left. The batch becomes ``executed``
        when every row has an outcome; a batch interrupted resumes here.
        """
        if self.status == "executed":
            raise BatchFrozen(f"batch {self.id} is executed and frozen: it cannot run again")
        reason = self.why_not_execute()
        if reason is not None:
            raise CatalogError(f"cannot execute: {reason}", interface=self.interface, version=self.version,
                               customer=self.customer)
        db, who, me = self._db, _who(executed_by), _claimer()
        with _frozen_guard(self.id), db.session():
            _sql(
                db,
                "UPDATE taskcatalog_batches SET status = 'executing', started_at = coalesce(started_at, ?),"
                " executed_by = ? WHERE id = ? AND status = 'pending'", (time.time(), who, self.id),
            )
        run, interface, version = self._batches._catalog._outcome, self.interface, self.version
        ctx = Context(self.customer, batch=self.id)
        # Progress as this executor sees it: the rows done when it started, plus its own.
        counts = self.counts()
        total = sum(counts.values())
        done, errors = total - counts["pending"], counts["error"]
        started, ran = time.monotonic(), 0
        batch_id, key = self.id, self.id << 32  # an outcome's key is key + its number
        claim = _Claim(self, me) if db.dialect == "sqlite" else _LockedRows(self)
        store = claim.store
        try:
            with _frozen_guard(batch_id):
                for number, args in claim.rows():
                    status, value, error, call_id, duration = run(interface, version, ctx, _DECODE(args)[0])
                    outcome: tuple[Any, ...]
                    if error is None:
                        text, is_repr = _encoded_value(value)
                        outcome = (key + number, batch_id, number, status, text, is_repr, None, None, call_id,
                                   duration, time.time())
                    else:
                        errors += 1
                        outcome = (key + number, batch_id, number, "error", None, 0, type(error).__name__,
                                   _error_text(error), call_id, duration, time.time())
                    store(outcome)  # durable before the next row starts
                    ran, done = ran + 1, done + 1
                    if progress is not None:
                        progress(BatchProgress(batch_id, min(done, total), total, errors, ran, time.monotonic() - started))
        except BaseException:
            # Ctrl-C or SystemExit in a row, a progress callback that raised, a failed write: the
            # rows this executor holds and has not finished go back to the others (while this
            # process lives nobody takes them over); the row in flight runs again, as at a crash.
            claim.release(sys.exc_info())
            raise
        self._conclude()
        return self.counts()

    def _conclude(self) -> None:
        """Mark the batch executed once every row has an outcome (any executor may be last)."""
        with _frozen_guard(self.id), self._db.session():
            _sql(
                self._db,
                "UPDATE taskcatalog_batches SET status = 'executed', executed_at = ? WHERE id = ?"
                f" AND status = 'executing' AND NOT EXISTS (SELECT 1 FROM {_ROWS_WITH_OUTCOMES}"
                " WHERE r.batch = ? AND o.number IS NULL)",
                (time.time(), self.id, self.id),
            )


class _Claim:
    """The rows one ``execute()`` call holds: claimed a range at a time, handed back if it stops early.

    A claim is one write transaction: it takes the next rows nobody has
    claimed (as many as fit in ``_CLAIM_SECONDS`` at the rate seen so far)
    and records the range in ``taskcatalog_batch_claims``, so two executors
    never hold one row. When no row is left unclaimed, the unfinished ranges
    of executors that are gone (or handed back) are taken over, one range per
    transaction.
    """

    def __init__(self, batch: Batch, me: str) -> None:
        self._batch = batch
        self._me = me
        self._held: int | None = None  # the first row number of the range being run
        self._outcome = batch._db._qmark(_OUTCOME)
        self._execute = batch._db._execute

    def store(self, outcome: tuple[Any, ...]) -> None:
        """Store a row's outcome: one autocommit statement."""
        self._execute(self._outcome, outcome)

    def rows(self) -> Iterator[tuple[int, str]]:
        """The claimed rows, (number, args as JSON), until none is left to claim."""
        size, seconds_per_row = 1, None
        while True:
            rows = self._claim(size)
            if not rows:
                return
            began = time.monotonic()
            yield from rows
            self._held = None  # every row of the range has its outcome
            spent = (time.monotonic() - began) / len(rows)
            seconds_per_row = spent if seconds_per_row is None else (seconds_per_row + spent) / 2
            size = max(1, min(_MOST_CLAIMED, int(_CLAIM_SECONDS / seconds_per_row) if seconds_per_row else _MOST_CLAIMED))

    def _claim(self, size: int) -> list[tuple[int, str]]:
        batch, db, me = self._batch, self._batch._db, self._me
        with _frozen_guard(batch.id), db.session():
            rows = _sql(db, _NEXT_UNCLAIMED, (batch.id, batch.id, size))
            if rows:
                _sql(
                    db,
                    "INSERT INTO taskcatalog_batch_claims (batch, first, last, claimed_by, claimed_at)"
                    " VALUES (?, ?, ?, ?, ?)", (batch.id, rows[0][0], rows[-1][0], me, time.time()),
                )
                self._held = rows[0][0]
                return [(int(number), str(args)) for number, args in rows]
            for first, last, claimer in _sql(db, _UNFINISHED_CLAIMS, (batch.id,)):
                if claimer is not None and _alive(claimer):
                    continue
                LOG.warning("batch %s: rows %s-%s were claimed by %s, which is gone; running their pending rows",
                            batch.id, first, last, "an executor that stopped" if claimer is None else claimer)
                _sql(
                    db,
                    "UPDATE taskcatalog_batch_claims SET claimed_by = ?, claimed_at = ? WHERE batch = ? AND first = ?",
                    (me, time.time(), batch.id, first),
                )
                self._held = first
                return [(int(number), str(args)) for number, args in _sql(
                    db,
                    _PENDING_IN_RANGE, (batch.id, first, last)
                )]
        return []

    def release(self, exc_info: ExcInfo) -> None:
        """Hand the range being run back: its rows without an outcome go to the next executor."""
        if self._held is None:
            return
        batch = self._batch
        try:
            with batch._db.session():
                _sql(
                    batch._db,
                    "UPDATE taskcatalog_batch_claims SET claimed_by = NULL WHERE batch = ? AND first = ?"
                    " AND claimed_by = ?", (batch.id, self._held, self._me),
                )
        except Exception:  # noqa: BLE001 - the error that brought us here is the one to raise
            LOG.exception("batch %s: could not hand back the rows from %s; they run again once this process has "
                          "ended", batch.id, self._held)


# PostgreSQL: the next pending row after a number that no other executor holds, locked.
_NEXT_LOCKED = """
SELECT r.number, r.args FROM taskcatalog_batch_rows AS r
WHERE r.batch = ? AND r.number > ? AND NOT EXISTS (
    SELECT 1 FROM taskcatalog_batch_outcomes AS o WHERE o.key = r.batch * 4294967296 + r.number
)
ORDER BY r.number LIMIT 1 FOR UPDATE OF r SKIP LOCKED
"""


class _LockedRows:
    """PostgreSQL's executors: a row is claimed by locking it, in the transaction that stores its outcome.

    ``SELECT ... FOR UPDATE SKIP LOCKED`` takes the next pending row no
    other executor holds, on any host; the lock lasts while the row runs and
    ends with the commit of its outcome. An executor that dies (a killed
    process, a lost host) loses its connection, the server rolls its
    transaction back, and the row is pending and free again: nothing to take
    over, no process to check. Rows are read forward from the last one taken;
    at the end, once more from the start for rows handed back meanwhile.
    """

    def __init__(self, batch: Batch) -> None:
        self._batch = batch
        self._db = batch._db
        self._next = self._db._qmark(_NEXT_LOCKED)
        self._done = self._db._qmark("SELECT 1 FROM taskcatalog_batch_outcomes WHERE key = ? * 4294967296 + ?")
        self._outcome = self._db._qmark(_OUTCOME)
        self._open: ExitStack | None = None  # the transaction of the row being run

    def rows(self) -> Iterator[tuple[int, str]]:
        db, batch, after = self._db, self._batch.id, 0
        while True:
            self._open = ExitStack()
            self._open.enter_context(db.session())
            found = db._execute(self._next, (batch, after))
            if found:
                number, args = found[0]
                after = number
                # Locked, but maybe finished: its executor may have committed after this
                # statement's snapshot was taken and before its lock was granted.
                if not db._execute(self._done, (batch, number)):
                    yield int(number), str(args)  # store() commits
                    continue
            self._commit()
            if not found:
                if after == 0:
                    return
                after = 0

    def store(self, outcome: tuple[Any, ...]) -> None:
        """Store a row's outcome and commit, which unlocks the row."""
        self._db._execute(self._outcome, outcome)
        self._commit()

    def _commit(self) -> None:
        if self._open is not None:
            stack, self._open = self._open, None
            stack.close()

    def release(self, exc_info: ExcInfo) -> None:
        """Roll the row being run back: it is pending and unlocked, for the next executor."""
        if self._open is not None:
            stack, self._open = self._open, None
            stack.__exit__(*exc_info)


class Batches:
    """``catalog.batches``: create, find and list the batches of the catalog database."""

    def __init__(self, catalog: Catalog, db: Connection) -> None:
        self._catalog = catalog
        self._db = db

    # -- internals shared with Batch ------------------------------------------------------

    def _entrypoint(self, interface: str, version: int) -> dict[str, Any]:
        """The described version (parameters, required, ...); raises the catalog's error when it cannot run."""
        described = self._catalog.describe(interface)
        for entry in described["versions"]:
            if entry["version"] == version:
                deprecation = entry["deprecated"]
                if deprecation is not None and deprecation["retired"]:  # every row would fail: refuse now
                    raise VersionRetired(
                        f"{interface} v{version} was retired after {deprecation['sunset']}: {deprecation['message']}"
                        f" ({location(described['path'], entry['line'])})", interface=interface, version=version,
                    )
                return entry  # type: ignore[no-any-return]
        versions = ", ".join(str(v["version"]) for v in described["versions"]) or "none"
        raise VersionNotFound(
            f"interface {interface!r} has no version {version} (versions: {versions})", interface=interface, version=version
        )

    def _checked_rows(
        self, interface: str, version: int, rows: Iterable[Mapping[str, Any]], customer: str | None, first: int = 1
    ) -> list[str]:
        """Each row as JSON text, after checking it fits the entrypoint; ArgumentError naming the first that does not."""
        if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
            raise TypeError(f"rows must be an iterable of mappings (keyword arguments), not {type(rows).__name__}")
        entry = self._entrypoint(interface, version)
        accepted, required = set(entry["parameters"]), set(entry["required"])
        any_keyword, context_name = entry["accepts_any_keyword"], entry["context_parameter"]
        encoded = []
        for offset, row in enumerate(rows):
            where = f"row {first + offset} of {interface} v{version}"
            if not isinstance(row, Mapping):
                raise ArgumentError(f"{where} is a {type(row).__name__}, not a mapping of keyword arguments",
                                    interface=interface, version=version, customer=customer)
            keys = set(row)
            problems = []
            bad_keys = sorted(repr(k) for k in keys if not isinstance(k, str) or not k.isidentifier())
            unknown = [] if any_keyword else sorted(k for k in keys if isinstance(k, str) and k not in accepted)
            if context_name in keys and context_name not in unknown:
                unknown.append(context_name)
            missing = sorted(required - keys)
            if bad_keys:
                problems.append(f"keys that are not identifiers: {', '.join(bad_keys)}")
            if unknown:
                problems.append(f"unexpected keyword argument(s) {', '.join(map(repr, unknown))}")
            if missing:
                problems.append(f"no value for required argument(s) {', '.join(map(repr, missing))}")
            if not problems:
                try:
                    encoded.append(_ENCODE(dict(row)))
                    continue
                except TypeError as exc:
                    problems.append(f"its values cannot be stored as JSON ({exc})")
                except ValueError:  # the one json raises for floats, in words that change between Pythons
                    problems.append("its values cannot be stored as JSON (NaN and infinite floats have no JSON form)")
                except RecursionError:
                    problems.append("its values cannot be stored as JSON (nested too deeply)")
            accepts = ", ".join([*entry["parameters"], *(["**kwargs"] if any_keyword else [])]) or "no arguments"
            raise ArgumentError(f"{where}: {'; '.join(problems)}; it accepts: {accepts}; nothing was stored",
                                interface=interface, version=version, customer=customer)
        return encoded

    def _insert_rows(self, batch: int, encoded: list[str]) -> list[int]:
        db = self._db
        with _frozen_guard(batch), db.session():
            first = _sql(
                db,
                "UPDATE taskcatalog_batches SET next_number = next_number + ? WHERE id = ? RETURNING next_number - ?",
                (len(encoded), batch, len(encoded)),
            )[0][0]
            numbers = list(range(first, first + len(encoded)))
            if encoded:
                db._execute_many(
                    db._qmark("INSERT INTO taskcatalog_batch_rows (batch, number, args) VALUES (?, ?, ?)"),
                    [(batch, number, text) for number, text in zip(numbers, encoded)],
                )
        return numbers

    def _add_dependencies(self, batch: int, others: Iterable[int]) -> None:
        db = self._db
        with _frozen_guard(batch), db.session():
            for other in others:
                if isinstance(other, bool) or not isinstance(other, int):
                    raise TypeError(f"a dependency is a Batch or a batch id, not {other!r}")
                if not _sql(db, "SELECT 1 FROM taskcatalog_batches WHERE id = ?", (other,)):
                    raise BatchNotFound(f"batch {batch} cannot depend on batch {other}: there is no batch {other}")
                path = self._path(other, batch)
                if path is not None or other == batch:
                    chain = " -> ".join(map(str, [batch, *(path or [batch])]))
                    raise CatalogError(f"batch {batch} cannot depend on batch {other}: that makes a cycle ({chain})")
                _sql(
                    db,
                    "INSERT INTO taskcatalog_batch_dependencies (batch, depends_on) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    (batch, other),
                )

    def _path(self, start: int, goal: int) -> list[int] | None:
        """A chain of dependencies from ``start`` to ``goal``, if there is one."""
        seen, stack = {start}, [(start, [start])]
        while stack:
            node, chain = stack.pop()
            if node == goal:
                return chain
            for (nxt,) in _sql(
                self._db,
                "SELECT depends_on FROM taskcatalog_batch_dependencies WHERE batch = ?", (node,)
            ):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*chain, nxt]))
        return None

    # -- the API ------------------------------------------------------------------------

    def create(
        self,
        interface: str,
        version: int,
        customer: str | None = None,
        rows: Iterable[Mapping[str, Any]] = (),
        description: str = "",
        depends_on: Iterable[Batch | int] = (),
        created_by: str | None = None,
    ) -> Batch:
        """A new pending batch of calls of ``interface`` at ``version`` for ``customer``.

        The rows are checked as ``add_rows`` checks them; nothing is stored
        when one does not fit.
        """
        check_interface_name(interface)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ArgumentError(f"a batch runs one exact version: an int >= 1, not {version!r}", interface=interface)
        if customer is not None:
            check_customer_name(customer)
        if not isinstance(description, str):
            raise TypeError(f"description must be a str, not {type(description).__name__}")
        encoded = self._checked_rows(interface, version, rows, customer)
        who = _who(created_by)
        db = self._db
        with db.session():
            batch_id = _sql(
                db,
                "INSERT INTO taskcatalog_batches (interface, version, customer, description, created_at, created_by)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (interface, version, customer, description, time.time(), who),
            )[0][0]
            self._insert_rows(batch_id, encoded)
            self._add_dependencies(batch_id, [d.id if isinstance(d, Batch) else d for d in depends_on])
        LOG.info("batch %s created: %s v%s for %s, %d row(s)", batch_id, interface, version, customer, len(encoded))
        return self.get(batch_id)

    def get(self, batch_id: int) -> Batch:
        """The batch with that id; BatchNotFound if there is none."""
        if isinstance(batch_id, bool) or not isinstance(batch_id, int):
            raise TypeError(f"a batch id is an int, not {batch_id!r}")
        rows = _sql(
            self._db,
            "SELECT id, interface, version, customer, description, created_at, created_by"
            " FROM taskcatalog_batches WHERE id = ?", (batch_id,),
        )
        if not rows:
            raise BatchNotFound(f"no batch {batch_id} in {self._db.label}")
        names = ("id", "interface", "version", "customer", "description", "created_at", "created_by")
        return Batch(self, dict(zip(names, rows[0])))

    def list(self, status: str | None = None) -> list[Batch]:
        """Every batch, newest first; only those with ``status`` if given."""
        if status is not None and status not in BATCH_STATUSES:
            raise ValueError(f"status must be one of {', '.join(BATCH_STATUSES)}, not {status!r}")
        sql = "SELECT id FROM taskcatalog_batches" + ("" if status is None else " WHERE status = ?") + " ORDER BY id DESC"
        return [self.get(row[0]) for row in _sql(self._db, sql, () if status is None else (status,))]


@contextmanager
def _frozen_guard(batch: int) -> Iterator[None]:
    """Turns the triggers' refusal (an executed batch changed behind our back) into BatchFrozen."""
    try:
        yield
    except Exception as exc:
        if _FROZEN in str(exc):
            raise BatchFrozen(f"batch {batch} is executed and frozen (refused by the database)") from exc
        raise
