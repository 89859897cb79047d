"""``@deprecated``: retire an entrypoint version on a date, with warning first."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["deprecated", "Deprecation"]

DEPRECATION_ATTR = "__taskcatalog_deprecated__"


@dataclass(frozen=True, slots=True)
class Deprecation:
    message: str
    sunset: dt.date | None

    @property
    def retire_at(self) -> float | None:
        """POSIX time of the first instant past the sunset day (UTC), or None."""
        if self.sunset is None:
            return None
        day_after = self.sunset + dt.timedelta(days=1)
        return dt.datetime(day_after.year, day_after.month, day_after.day, tzinfo=dt.timezone.utc).timestamp()


def deprecated(message: str, *, sunset: str | dt.date | None = None) -> Callable[[Any], Any]:
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
    elif sunset is not None and not isinstance(sunset, dt.date):
        raise TypeError(f"@deprecated: sunset must be an ISO date string or a date, not {sunset!r}")
    info = Deprecation(message, sunset)

    def mark(target: Any) -> Any:
        setattr(target, DEPRECATION_ATTR, info)
        return target

    return mark
