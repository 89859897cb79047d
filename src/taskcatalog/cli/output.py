"""What every command shares: its errors, JSON that stays JSON, tables that line up, progress.

Conventions (docs/cli.md): results on stdout, human by default and JSON with
``--json`` (valid JSON and nothing else on stdout); errors one line on
stderr; exit status 0 ok, 1 problems found or a failed call, 2 a command
line that cannot be carried out.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from ..errors import brief

__all__ = ["UsageError", "Failure", "jsonable", "to_json", "table", "Progress", "PROG"]

PROG = "taskcatalog"


class UsageError(Exception):
    """A command line that cannot be carried out: one line on stderr, exit 2."""


class Failure(Exception):
    """A problem the command found (a folder missing, a refusal): one line on stderr, exit 1."""


# How deep a value is shown before the rest is summarised: deeper than any
# sensible result, far shallower than the recursion limit json.dumps would hit.
_MAX_DEPTH = 100
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _shown(value: object) -> str:
    """``repr(value)``, bounded, or a note saying why there is none."""
    try:
        return brief(repr(value), 300)
    except Exception as exc:  # noqa: BLE001 - a foreign __repr__ may raise anything
        return f"<{type(value).__name__} object; its repr() raised {type(exc).__name__}>"


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data: NaN and infinities as the strings ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"``; other keys as their ``str``; anything JSON
    cannot hold (or nested deeper than 100) as a bounded ``repr``; objects
    with a ``to_dict()`` (the library's records) as that."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NON_FINITE[repr(value)]
    if depth >= _MAX_DEPTH:
        return f"<{type(value).__name__} nested too deep to show>"
    if isinstance(value, Mapping):
        return {_key(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item, depth + 1) for item in value]
    to_dict = getattr(type(value), "to_dict", None)
    if callable(to_dict):
        return jsonable(to_dict(value), depth + 1)
    if hasattr(value, "isoformat"):  # dates and datetimes
        return str(value.isoformat())
    return _shown(value)


def _key(key: object) -> str:
    """A mapping key as JSON needs it, a string: ``1`` -> ``"1"``, ``(2, 3)`` -> ``"(2, 3)"``."""
    if isinstance(key, str):
        return key
    plain = jsonable(key)
    if isinstance(plain, str):  # NaN, infinities, objects shown by their repr
        return plain
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(plain)
    return _shown(key)


def to_json(value: Any) -> str:
    """One line of valid JSON, whatever ``value`` is."""
    return json.dumps(jsonable(value), ensure_ascii=False, allow_nan=False)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if hasattr(value, "isoformat"):
        return str(value.isoformat(sep=" ", timespec="seconds") if hasattr(value, "hour") else value.isoformat())
    return brief(value, 120)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO, empty: str = "") -> None:
    """Rows under headers, each column as wide as its widest cell; numbers aligned right."""
    if not rows:
        if empty:
            print(empty, file=out)
        return
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(header), *(len(row[i]) for row in cells)) for i, header in enumerate(headers)]
    numeric = [all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    print(line(headers), file=out)
    for row in cells:
        print(line(row), file=out)


class Progress:
    """A progress line for long work: redrawn in place on a terminal, else a plain line every few seconds.

    ``initial`` is the work done before this run started (a resumed batch):
    it counts toward the done count, not toward this run's rate and ETA.
    """

    def __init__(
        self, total: int, what: str, stream: TextIO | None = None, every: float = 5.0, initial: int = 0
    ) -> None:
        self.total = total
        self.initial = initial
        self.what = what
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every if not self.terminal else 0.1
        self.start = time.monotonic()
        self._shown = self.start  # the first line after ``every`` seconds: short work shows none
        self._any = False

    def update(self, done: int, errors: int = 0, final: bool = False) -> None:
        """Show the state if it is time to; ``final`` closes a line already shown (and shows nothing else)."""
        now = time.monotonic()
        if (final and not self._any) or (not final and now - self._shown < self.every):
            return
        self._shown, self._any = now, True
        elapsed = max(now - self.start, 1e-9)
        rate = (done - self.initial) / elapsed
        left = (self.total - done) / rate if rate > 0 and self.total > done else 0.0
        text = (
            f"{self.what}: {done}/{self.total} ({100 * done / max(self.total, 1):.0f}%), "
            f"{rate:.0f}/s, {errors} error(s), ETA {left:.0f}s"
        )
        if self.terminal:
            print("\r" + text + ("\n" if final else ""), end="", file=self.stream, flush=True)
        else:
            print(text, file=self.stream, flush=True)
