"""Values SQLite cannot store, found before they are lost or named when binding fails.

SQLite silently stores a float NaN as NULL, so NaN is looked for before a
write (``nan_at``): cheaply, since ``create`` and ``create_many`` are hot. Other values fail while ``sqlite3`` binds them,
with errors that name no column: an int outside 64 bits (``OverflowError``),
a str holding a lone surrogate, which UTF-8 cannot encode
(``UnicodeEncodeError``), a type it does not know (``ProgrammingError``).
Those are caught where they happen, at no cost until then, and turned into a
``TypeError`` naming the table, the column and, for ``create_many``, the row.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from operator import ne
from typing import Any

__all__ = ["BIND_ERRORS", "Parameters", "bind_error", "bind_error_in_rows", "nan_at", "nan_error", "refuse_nan"]

#: What sqlite3 raises, besides sqlite3.Error, for a value it cannot bind.
BIND_ERRORS = (OverflowError, UnicodeEncodeError)

_BINDING = re.compile(r"binding parameter (\d+)")
_INT64_MIN, _INT64_END = -(2**63), 2**63


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


def nan_at(values: Sequence[object]) -> int | None:
    """The index of the first float NaN in ``values`` (a row, or a column of a
    ``create_many``), or None.

    Each step runs in C: a column of numbers is proven NaN-free by its sum
    (a NaN makes the sum NaN), a column of text by joining it (only str
    joins), anything else by comparing each value with itself. Only when that
    finds something (or a value's ``!=`` raises) is each value looked at.
    """
    anything: Sequence[Any] = values  # sum() and join() raise TypeError for what they cannot take
    try:
        total = sum(anything, 0.0)
    except (TypeError, OverflowError):  # not all numbers (or an int beyond float range)
        try:
            "".join(anything)
            return None
        except TypeError:
            pass
    else:
        if type(total) is float and total == total:
            return None
    try:
        if not any(map(ne, values, values)):  # NaN is the only common value unequal to itself
            return None
    except Exception:  # a value whose != raises: sqlite3 will judge it; look value by value
        pass
    for index, value in enumerate(values):
        if isinstance(value, float) and value != value:
            return index
    return None


def nan_error(index: int, parameters: Parameters, label: str) -> TypeError:
    """The TypeError for the NaN at ``index`` (found by ``nan_at``)."""
    return _error(index, parameters, label, _nan_reason(index < parameters.stored))


def refuse_nan(values: Sequence[object], parameters: Parameters, label: str) -> None:
    """TypeError naming the column if ``values`` hold a float NaN."""
    index = nan_at(values)
    if index is not None:
        raise nan_error(index, parameters, label)


def bind_error(exc: BaseException, values: Sequence[object], parameters: Parameters, label: str) -> TypeError | None:
    """The TypeError for the value among ``values`` that ``exc`` failed to bind; None when
    ``exc`` is not about binding a value."""
    if isinstance(exc, sqlite3.ProgrammingError):
        # "Error binding parameter N: type 'dict' is not supported"
        found = _BINDING.search(str(exc))
        return None if found is None else _error(int(found.group(1)) - 1, parameters, label, str(exc))
    if isinstance(exc, BIND_ERRORS):
        for index, value in enumerate(values):
            reason = _reason(value, index < parameters.stored)
            if reason is not None:
                return _error(index, parameters, label, reason)
    return None


def bind_error_in_rows(
    exc: BaseException, rows: Iterable[Sequence[object]], parameters: Parameters, label: str, first: int = 0
) -> TypeError | None:
    """``bind_error`` for an executemany of ``rows`` (numbered from ``first``): the first row
    holding a value that cannot be bound is named. (A type sqlite3 does not know is named
    by column only: sqlite3 says which parameter, not which row.)"""
    if not isinstance(exc, BIND_ERRORS):
        return bind_error(exc, (), parameters, label)
    for number, row in enumerate(rows, first):
        error = bind_error(exc, row, replace(parameters, row=number), label)
        if error is not None:
            return error
    return None


def _error(index: int, parameters: Parameters, label: str, reason: str) -> TypeError:
    row = "" if parameters.row is None else f" (create_many() row {parameters.row})"
    return TypeError(f"{parameters.describe(index)} in {label}{row}: {reason}")


def _nan_reason(stored: bool) -> str:
    if stored:
        return "NaN, which SQLite would store as NULL, losing the value; store None, or the number as text"
    return "NaN, which SQLite binds as NULL, so the filter would match nothing; use None to match NULL"


def _reason(value: object, stored: bool) -> str | None:
    """Why sqlite3 cannot bind ``value`` (to store it, or to compare with it), or None."""
    if isinstance(value, int) and not _INT64_MIN <= value < _INT64_END:
        digits = str(int(value)) if value.bit_length() <= 256 else f"of {value.bit_length()} bits"
        advice = "; store it as text" if stored else ""
        return f"the int {digits} is outside SQLite's 64-bit integer range (-2**63 to 2**63 - 1){advice}"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (
                f"the str holds {value[exc.start:exc.end]!r} at position {exc.start}, which UTF-8 cannot "
                f"encode ({exc.reason}); SQLite stores text as UTF-8"
            )
    return None
