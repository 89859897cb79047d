"""What the caller sees for a psycopg error, and sessions PostgreSQL aborted.

``translate`` maps PostgreSQL's SQLSTATE codes to this package's errors,
worded for the person reading the log: a lock held past the timeout, a
deadlock, a schema changed under a cached statement, a full disk, a
damaged page. Errors with nothing to add (constraint violations, values a
column's type refuses) stay as they are: psycopg's own classes, whose
messages already say what was wrong.

The other half of meeting an error inside a session: unlike SQLite, which
undoes only the failed statement, PostgreSQL aborts the whole transaction
at the first statement it refuses; until the transaction (or the savepoint
around the statement) is rolled back, it refuses everything. So every error
met inside a session passes here, and an aborted one is noted in the
thread's state (``ThreadState.aborted``): later calls at that level are
refused with a clear error instead of PostgreSQL's "current transaction is
aborted", and leaving the level rolls it back. A connection the server
dropped is discarded, the session it carried is over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from ...errors import DatabaseError, DatabaseLocked, SchemaError
from .opening import first_line
from .values import Parameters, is_client_error, refusal, refusal_in_rows

if TYPE_CHECKING:
    from .threads import ThreadConnections, ThreadState

__all__ = ["ErrorTranslator", "translate"]

#: SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html).
LOCK_NOT_AVAILABLE, DEADLOCK = "55P03", "40P01"
UNDEFINED_TABLE, UNDEFINED_COLUMN, FEATURE_NOT_SUPPORTED = "42P01", "42703", "0A000"
DATA_CORRUPTED, INDEX_CORRUPTED = "XX001", "XX002"
#: Classes: connection exceptions, operator intervention (shutdown), insufficient resources (disk full).
CONNECTION, SHUTDOWN, RESOURCES = "08", "57P", "53"


def translate(exc: Exception, label: str, timeout: float) -> BaseException:
    """The error to raise for ``exc`` on the database ``label``: one of ours, or ``exc`` itself.

    A SchemaError means a statement met a changed schema: the caller should
    forget what it cached about the schema.
    """
    state = getattr(exc, "sqlstate", None) or ""
    message = first_line(str(exc))
    if state == LOCK_NOT_AVAILABLE:
        return DatabaseLocked(
            f"the database {label} is locked: another connection held a lock for more than "
            f"{timeout:g} s ({message}); keep transactions short or raise timeout=",
            path=label,
        )
    if state == DEADLOCK:
        return DatabaseLocked(
            f"the database {label} is locked: a deadlock with another connection ({message}), which "
            f"PostgreSQL broke by refusing this statement; retry, or take locks in the same order everywhere",
            path=label,
        )
    if state in (UNDEFINED_TABLE, UNDEFINED_COLUMN) or (
        state == FEATURE_NOT_SUPPORTED and "cached plan must not change result type" in message
    ):
        # The checks against the schema passed, so the schema changed under
        # them (another process migrated).
        return SchemaError(f"{message} in {label} (the schema has changed)", path=label)
    if state.startswith((CONNECTION, SHUTDOWN)):
        return DatabaseError(f"lost the connection to {label}: {message}", path=label)
    if state.startswith(RESOURCES):
        return DatabaseError(f"cannot write the database {label}: {message}", path=label)
    if state in (DATA_CORRUPTED, INDEX_CORRUPTED):
        return DatabaseError(f"the database {label} is damaged ({message}); restore it from a backup", path=label)
    return exc


class ErrorTranslator:
    """Raises, for what executing a statement raised, the error the caller should see.

    One per connection: it knows the database's name and timeout, whether
    the connection is closed, the calling thread's session (to mark it
    aborted), and what to forget when the schema changed.
    """

    def __init__(
        self,
        threads: ThreadConnections,
        label: str,
        timeout: float,
        forget_schema: Callable[[], None],
        psycopg: Any,
    ) -> None:
        self._threads = threads
        self._label = label
        self._timeout = timeout
        self._forget_schema = forget_schema
        self._psycopg = psycopg

    def raise_for(
        self,
        exc: BaseException,
        values: Sequence[object] = (),
        parameters: Parameters | None = None,
        rows: Iterable[Sequence[object]] | None = None,
    ) -> NoReturn:
        """Raise the error for ``exc``; ``parameters`` says what ``values`` (or each of ``rows``)
        were bound to, so a value psycopg could not send is named."""
        threads = self._threads
        if threads.closed:
            raise threads.closed_error() from exc
        state = threads.state
        psycopg = self._psycopg
        if parameters is not None and is_client_error(exc, psycopg):
            adapters = state.conn.adapters if state.conn is not None else psycopg.adapters
            if rows is None:
                unsent = refusal(values, parameters, self._label, adapters, psycopg)
            else:
                unsent = refusal_in_rows(rows, parameters, self._label, adapters, psycopg)
            if unsent is not None:
                self.note_abort(state, exc)  # rows an executemany sent before it may have failed
                raise unsent from exc
        if not isinstance(exc, psycopg.Error):
            raise exc
        conn = state.conn
        if conn is not None and conn.closed:
            # The server dropped the connection: forget it, and end the session it carried.
            threads.discard(state)
            lost = DatabaseError(
                f"lost the connection to {self._label}: {first_line(str(exc)) or type(exc).__name__}; "
                f"the next call outside a session connects again",
                path=self._label,
            )
            if state.depth and state.aborted is None:
                state.aborted, state.aborted_depth = lost, 1
            raise lost from exc
        self.note_abort(state, exc)
        error = translate(exc, self._label, self._timeout)
        if error is exc:
            raise exc
        if isinstance(error, SchemaError):
            self._forget_schema()
            self._forget_prepared(state)
        raise error from exc

    def note_abort(self, state: ThreadState, exc: BaseException) -> None:
        """Mark the calling thread's session level aborted if ``exc`` aborted PostgreSQL's transaction."""
        conn = state.conn
        if state.depth and state.aborted is None and conn is not None and not conn.closed:
            if conn.info.transaction_status == self._psycopg.pq.TransactionStatus.INERROR:
                state.aborted, state.aborted_depth = exc, state.depth

    def _forget_prepared(self, state: ThreadState) -> None:
        """Drop the server-side prepared statements of this thread's connection: one may hold an old schema.

        Inside a transaction the rollback that must follow does it (psycopg
        clears its prepared statements on ROLLBACK); outside one, now.
        """
        conn = state.conn
        if conn is None or conn.closed:
            return
        if conn.info.transaction_status == self._psycopg.pq.TransactionStatus.IDLE:
            try:
                conn.execute("DEALLOCATE ALL")  # psycopg forgets its own record of them too
            except self._psycopg.Error:
                pass
