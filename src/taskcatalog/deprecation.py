"""``@deprecated``: retire an entrypoint version on a date, with warning first."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["deprecated", "Deprecation"]

DEPRECATION_ATTR = "__taskcatalog_deprecated__"

T = TypeVar("T")

_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Deprecation:
    """What ``@deprecated`` attached: the advice, the sunset day, and when that day ends.

    ``retire_at`` is computed once, here, as POSIX seconds: the first instant
    past the sunset day in UTC (None without a sunset). Every question "is
    this version retired?" is ``retired(now)``, so the answer cannot differ by
    who asks.
    """

    message: str
    sunset: dt.date | None
    retire_at: float | None = field(init=False)

    def __post_init__(self) -> None:
        retire_at = None
        if self.sunset is not None:
            # Midnight of the sunset day plus one day, in seconds: unlike
            # ``date + timedelta(days=1)`` this holds for 9999-12-31 too.
            start = dt.datetime(self.sunset.year, self.sunset.month, self.sunset.day, tzinfo=dt.timezone.utc)
            retire_at = start.timestamp() + _DAY
        object.__setattr__(self, "retire_at", retire_at)

    def retired(self, now: float) -> bool:
        """True once ``now`` (POSIX seconds) is past the sunset day."""
        return self.retire_at is not None and now >= self.retire_at


def deprecated(message: str, *, sunset: str | dt.date | None = None) -> Callable[[T], T]:
    """Mark an entrypoint version as deprecated.

    Calls emit a ``DeprecationWarning`` and a log record carrying ``message``.
    After the ``sunset`` day (an ISO date, read in UTC) the version is retired:
    calls raise ``VersionRetired`` and ``"latest"`` no longer picks it.
    """
    if not isinstance(message, str) or not message.strip():
        raise TypeError("@deprecated needs a message telling callers what to use instead")
    if isinstance(sunset, str):
        try:
            sunset = dt.date.fromisoformat(sunset)
        except ValueError:
            raise ValueError(f"@deprecated: sunset {sunset!r} is not an ISO date like 2027-06-30") from None
    elif isinstance(sunset, dt.datetime):
        raise TypeError(f"@deprecated: sunset is a day, not a moment: pass {sunset.date().isoformat()!r}")
    elif sunset is not None and not isinstance(sunset, dt.date):
        raise TypeError(f"@deprecated: sunset must be an ISO date string or a date, not {sunset!r}")
    info = Deprecation(message, sunset)

    def mark(target: T) -> T:
        setattr(target, DEPRECATION_ATTR, info)
        return target

    return mark
