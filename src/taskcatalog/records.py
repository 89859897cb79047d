"""What telemetry hands back, as plain data: call records, statistics, usage.

Also the latency histogram both stores share. Percentiles cannot be added
up, and the statistics must survive the pruning of raw records, so every
store keeps, per (interface, version, customer, hour), a count of calls per
latency bucket. Buckets grow by a factor of 2**(1/16) (4.4 %) from 100 ns, so
a percentile read from them is within about 2.2 % of the true value.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "PluginSpan",
    "CallRecord",
    "CallStats",
    "Usage",
    "TelemetryReport",
    "BUCKET_BASE",
    "BUCKET_STEPS",
    "BUCKET_COUNT",
    "bucket_of",
    "bucket_upper",
    "percentiles",
    "utc",
]

#: Upper bound of bucket 0, in seconds; bucket k ends at BUCKET_BASE * 2 ** (k / BUCKET_STEPS).
BUCKET_BASE = 1e-7
BUCKET_STEPS = 16
#: Buckets up to about one hour; anything longer falls into the last one.
BUCKET_COUNT = 562

HOUR = 3600


class PluginSpan(NamedTuple):
    """One plugin invocation during a call: its slot, its name and how long it ran (seconds)."""

    slot: str | int
    plugin: str
    duration: float


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One recorded call (``catalog.history()``), newest first.

    ``version`` is the version that ran (or the one asked for, or None, when
    the call failed before a version was chosen); ``started`` is UTC.
    """

    call_id: str
    parent_id: str | None
    interface: str
    version: int | None
    customer: str | None
    started: dt.datetime
    duration: float
    status: str
    error_type: str | None
    error: str | None
    plugins: list[PluginSpan] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started"] = self.started.isoformat()
        data["plugins"] = [span._asdict() for span in self.plugins]
        return data


@dataclass(frozen=True, slots=True)
class CallStats:
    """Calls of one (interface, version, customer): counts and latency in seconds.

    ``p50`` and ``p95`` are read from the latency histogram (within about
    2.2 %); ``max`` is exact.
    """

    interface: str
    version: int | None
    customer: str | None
    calls: int
    errors: int
    p50: float
    p95: float
    max: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Usage:
    """Who calls what, and since when not: the answer to have before retiring a version.

    ``deprecated`` is the deprecation's advice (None when the version is not
    deprecated, or no longer in the catalog); ``sunset`` its sunset day.
    """

    interface: str
    version: int | None
    customer: str | None
    calls: int
    first_call: dt.datetime
    last_call: dt.datetime
    deprecated: str | None = None
    sunset: dt.date | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["first_call"] = self.first_call.isoformat()
        data["last_call"] = self.last_call.isoformat()
        data["sunset"] = None if self.sunset is None else self.sunset.isoformat()
        return data


@dataclass(frozen=True, slots=True)
class TelemetryReport:
    """What became of the recorded calls when telemetry closed.

    ``written``: records stored; ``unwritten``: records that could finally
    not be stored (the database stayed locked, full or read-only), with the
    last ``error`` met; ``failures``: write attempts that failed and were
    retried along the way.
    """

    written: int = 0
    unwritten: int = 0
    failures: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.unwritten == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_LOG_RATIO = math.log(2) / BUCKET_STEPS


def bucket_of(duration: float) -> int:
    """The latency bucket a duration (seconds) falls into."""
    if duration <= BUCKET_BASE:
        return 0
    return min(BUCKET_COUNT - 1, math.ceil(math.log(duration / BUCKET_BASE) / _LOG_RATIO - 1e-9))


def bucket_upper(bucket: int) -> float:
    """The upper bound (seconds) of a bucket; the last bucket has none."""
    if bucket >= BUCKET_COUNT - 1:
        return math.inf
    return BUCKET_BASE * math.pow(2.0, bucket / BUCKET_STEPS)


def _estimate(bucket: int) -> float:
    """A duration standing for a bucket: the geometric middle of its bounds."""
    if bucket <= 0:
        return BUCKET_BASE
    return BUCKET_BASE * math.pow(2.0, (bucket - 0.5) / BUCKET_STEPS)


def percentiles(counts: Mapping[int, int] | Iterable[tuple[int, int]], maximum: float) -> tuple[float, float]:
    """(p50, p95) from a latency histogram ``{bucket: calls}``, never above ``maximum``."""
    items = sorted(counts.items() if isinstance(counts, Mapping) else counts)
    total = sum(count for _, count in items)
    if total == 0:
        return 0.0, 0.0
    found = []
    for quantile in (0.50, 0.95):
        rank = quantile * total
        seen = 0
        for bucket, count in items:
            seen += count
            if seen >= rank:
                found.append(min(_estimate(bucket), maximum))
                break
    return found[0], found[1]


def utc(seconds: float) -> dt.datetime:
    """POSIX seconds as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def since_seconds(since: object) -> float | None:
    """``since`` (a datetime, naive meaning UTC, or an ISO 8601 string) as POSIX seconds."""
    if since is None:
        return None
    if isinstance(since, str):
        try:
            since = dt.datetime.fromisoformat(since)
        except ValueError:
            raise ValueError(f"since must be a datetime or an ISO 8601 string, not {since!r}") from None
    elif isinstance(since, dt.date) and not isinstance(since, dt.datetime):
        since = dt.datetime(since.year, since.month, since.day)
    if not isinstance(since, dt.datetime):
        raise TypeError(f"since must be a datetime or an ISO 8601 string, not {type(since).__name__}")
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.timezone.utc)
    return since.timestamp()
