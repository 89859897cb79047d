"""Values psycopg refuses to send, named by table, column and row.

PostgreSQL stores what its column types allow (NaN and the infinities in
a ``double precision``, any int in a ``numeric``), and refuses what they do
not on the server, with its own error (``psycopg.errors.NumericValueOutOfRange``
and the like, unchanged). Some values never reach the server: psycopg
refuses them while sending, with errors that name no column. A str holding
a NUL character (PostgreSQL text cannot hold one), a str holding a lone
surrogate (UTF-8 cannot encode it), a type psycopg has no adapter for (a
dict, an object of your own). Those are caught where they happen, at no
cost until then, and turned into a ``TypeError`` naming the table, the
column and, for ``create_many``, the row, as the SQLite backend does for
what ``sqlite3`` cannot bind.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["Parameters", "is_client_error", "refusal", "refusal_in_rows"]


@dataclass(frozen=True, slots=True)
class Parameters:
    """What the bound parameters of one statement are, to name the one that failed.

    The first ``stored`` parameters are values for the columns ``names``
    starts with; the rest compare with the ``where`` columns named after
    them (None for ``limit``). ``row`` is the row of a ``create_many``.
    """

    table: str
    names: Sequence[str | None]
    stored: int
    row: int | None = None

    def describe(self, index: int) -> str:
        name = self.names[index] if index < len(self.names) else None
        if index < self.stored:
            return f"cannot store the value for column {name!r} of table {self.table!r}"
        if name is None:
            return f"cannot use the limit for table {self.table!r}"
        return f"cannot use the value of where[{name!r}] for table {self.table!r}"


def is_client_error(exc: BaseException, psycopg: Any) -> bool:
    """Whether ``exc`` is psycopg refusing to send a value (nothing reached the server)."""
    if isinstance(exc, UnicodeEncodeError):
        return True
    if isinstance(exc, psycopg.DataError) and getattr(exc, "sqlstate", None) is None:
        return True  # "PostgreSQL text fields cannot contain NUL (0x00) bytes"
    return isinstance(exc, psycopg.ProgrammingError) and str(exc).startswith("cannot adapt type")


def _reason(value: object, adapters: Any, psycopg: Any) -> str | None:
    """Why psycopg cannot send ``value``, or None."""
    if isinstance(value, str):
        at = value.find("\x00")
        if at >= 0:
            return (
                f"the str holds a NUL character at position {at}, which PostgreSQL text cannot hold; "
                f"remove it, or store bytes in a bytea column"
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (
                f"the str holds {value[exc.start:exc.end]!r} at position {exc.start}, which UTF-8 cannot "
                f"encode ({exc.reason}); PostgreSQL stores text as UTF-8"
            )
        return None
    if isinstance(value, (list, tuple)):  # sent as an array: its items must be sendable too
        for item in value:
            reason = _reason(item, adapters, psycopg)
            if reason is not None:
                return f"an item of the {type(value).__name__}: {reason}"
        return None
    if value is None:
        return None
    try:
        adapters.get_dumper(type(value), psycopg.adapt.PyFormat.AUTO)
    except psycopg.ProgrammingError:
        return (
            f"psycopg has no adapter for the type {type(value).__name__!r}; convert the value first, "
            f"for instance with json.dumps"
        )
    return None


def refusal(
    values: Sequence[object], parameters: Parameters, label: str, adapters: Any, psycopg: Any
) -> TypeError | None:
    """The TypeError for the first value psycopg cannot send, or None."""
    for index, value in enumerate(values):
        reason = _reason(value, adapters, psycopg)
        if reason is not None:
            row = "" if parameters.row is None else f" (create_many() row {parameters.row})"
            return TypeError(f"{parameters.describe(index)} in {label}{row}: {reason}")
    return None


def refusal_in_rows(
    rows: Iterable[Sequence[object]], parameters: Parameters, label: str, adapters: Any, psycopg: Any
) -> TypeError | None:
    """``refusal`` for the rows of an executemany: the first row holding such a value is named."""
    for number, row in enumerate(rows):
        error = refusal(row, replace(parameters, row=number), label, adapters, psycopg)
        if error is not None:
            return error
    return None
