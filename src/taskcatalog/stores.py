"""Where call records live: the catalog database, or memory when there is none.

In the database (schema/sqlite/0001_telemetry.sql), raw records are kept in
batches, one row per write, pruned after the retention period; aggregates
per (interface, version, customer, hour, latency bucket) are kept up to date
as batches are written: counts, first and last call, the longest call, and
so a latency histogram (``records.py``). ``stats`` and ``usage`` read only the
aggregates, so they answer as fast with a million records as with ten, and
survive the pruning of the records they came from. There ``since`` filters
at the resolution of an hour: the hour containing ``since`` counts whole.

In memory, the newest calls (a bounded buffer, no writer) are all there is:
``stats``, ``usage`` and ``history`` are computed from them when asked, with
exact percentiles and ``since``.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import socket
import time
from operator import itemgetter
from collections.abc import Callable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from .db.migrations import Migration
from .records import BUCKET_COUNT, HOUR, CallRecord, CallStats, PluginSpan, bucket_upper, percentiles, utc
from .telemetry import Batch, Buffers

if TYPE_CHECKING:
    from .db import Connection

__all__ = ["MemoryStore", "DatabaseStore", "UsageRow", "catalog_migrations", "NAMESPACE"]

#: The migration namespace of the catalog's own tables.
NAMESPACE = "taskcatalog"

Key = tuple[str, int | None, str | None]  # (interface, version, customer)
UsageRow = tuple[str, int | None, str | None, int, float, float]  # key, calls, first, last
# (prefix, number, parent, interface, version, customer, started, duration, status, error_type, error)
Row = tuple[Any, ...]

def catalog_migrations(dialect: str) -> list[Migration]:
    """The catalog's own migrations for an engine, shipped as package data (``schema/<dialect>/``)."""
    folder = resources.files("taskcatalog").joinpath("schema", dialect)
    migrations = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            migrations.append(Migration(NAMESPACE, entry.name[:-4], entry.read_text(encoding="utf-8")))
    return migrations


def _record(row: Row, plugins: list[PluginSpan]) -> CallRecord:
    prefix, number, parent, interface, version, customer, started, duration, status, etype, error = row
    return CallRecord(
        f"{prefix}-{number}", parent, interface, version, customer, utc(started), duration, status, etype, error, plugins
    )


def _order(key: Key) -> tuple[str, int, str]:
    name, version, who = key
    return name, -1 if version is None else version, "" if who is None else who


def _exact(durations: list[float], quantile: float) -> float:
    """The nearest-rank percentile of sorted ``durations``."""
    return durations[max(0, math.ceil(quantile * len(durations)) - 1)]


class MemoryStore:
    """Telemetry without a database: what the bounded buffers hold, summarised when asked.

    ``prefix`` and ``wall_offset`` (called at each question) turn this
    process's call numbers and ``perf_counter_ns`` times into call ids and UTC.
    """

    def __init__(self, buffers: Buffers, prefix: Callable[[], str], wall_offset: Callable[[], float]) -> None:
        self.buffers = buffers
        self._prefix = prefix
        self._offset = wall_offset

    def _rows(self, interface: str | None, customer: str | None, since: float | None) -> list[Row]:
        """Matching calls, oldest first, with their spans last."""
        prefix, offset = self._prefix(), self._offset()
        keys = self.buffers.call_keys.values
        rows = []
        for number, key, start, nanoseconds, status, parent, etype, error, spans in list(self.buffers.calls):
            name, version, who = keys[key]
            if (interface is not None and name != interface) or (customer is not None and who != customer):
                continue
            started = start * 1e-9 + offset
            if since is not None and started < since:
                continue
            rows.append((prefix, number, parent, name, version, who, started, nanoseconds * 1e-9, status, etype, error, spans))
        return rows

    def _grouped(self, interface: str | None, customer: str | None, since: float | None) -> dict[Key, list[Row]]:
        groups: dict[Key, list[Row]] = {}
        for row in self._rows(interface, customer, since):
            groups.setdefault((row[3], row[4], row[5]), []).append(row)
        return dict(sorted(groups.items(), key=lambda item: _order(item[0])))

    def stats(self, interface: str | None, customer: str | None, since: float | None) -> list[CallStats]:
        found = []
        for (name, version, who), rows in self._grouped(interface, customer, since).items():
            durations = sorted(row[7] for row in rows)
            errors = sum(row[8] == "error" for row in rows)
            found.append(CallStats(
                name, version, who, len(rows), errors, _exact(durations, 0.5), _exact(durations, 0.95), durations[-1]
            ))
        return found

    def usage(self, interface: str | None, customer: str | None) -> list[UsageRow]:
        return [
            (name, version, who, len(rows), min(r[6] for r in rows), max(r[6] for r in rows))
            for (name, version, who), rows in self._grouped(interface, customer, None).items()
        ]

    def history(
        self, interface: str | None, customer: str | None, since: float | None, status: str | None, limit: int
    ) -> list[CallRecord]:
        rows = [row for row in self._rows(interface, customer, since) if status is None or row[8] == status]
        span_keys = self.buffers.span_keys.values
        return [
            _record(row[:11], _spans(row[11], span_keys.__getitem__))
            for row in sorted(rows, key=lambda row: row[6], reverse=True)[:limit]
        ]


def _spans(spans: Sequence[Sequence[Any]], names: Callable[[Any], tuple[Any, ...]]) -> list[PluginSpan]:
    """PluginSpans from [plugin key, start ns, duration ns] lists; ``names`` maps a key to (slot, plugin)."""
    found = []
    for key, _, nanoseconds in spans:
        slot, plugin = names(key)
        found.append(PluginSpan(slot, plugin, nanoseconds * 1e-9))
    return found


# Keys and records reach the database as JSON arrays, one statement each
# (see telemetry.py for why not executemany); the process's id is the same
# for a whole batch and is written into the statements as a literal int.
_INSERT_CALL_KEYS = """
INSERT OR IGNORE INTO taskcatalog_call_keys (process, key, interface, version, customer)
SELECT {process}, json_extract(value, '$[0]'), json_extract(value, '$[1]'),
       coalesce(json_extract(value, '$[2]'), 0), coalesce(json_extract(value, '$[3]'), '')
FROM json_each(?)
"""
_INSERT_SPAN_KEYS = """
INSERT OR IGNORE INTO taskcatalog_plugin_keys (process, key, slot, plugin)
SELECT {process}, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')
FROM json_each(?)
"""
_INSERT_BATCH = (
    "INSERT INTO taskcatalog_call_batches (process, clock, calls, earliest, latest, records)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
# The aggregates of a batch, computed in Python (cheaper than having SQLite
# take the JSON apart again), added in one statement, named through the keys.
_ADD_STATS = """
INSERT INTO taskcatalog_call_stats
    (interface, version, customer, hour, bucket, calls, errors, first_call, last_call, max_duration)
SELECT k.interface, k.version, k.customer, json_extract(a.value, '$[1]'), json_extract(a.value, '$[2]'),
       json_extract(a.value, '$[3]'), json_extract(a.value, '$[4]'), json_extract(a.value, '$[5]'),
       json_extract(a.value, '$[6]'), json_extract(a.value, '$[7]')
FROM json_each(?) AS a JOIN taskcatalog_call_keys AS k ON k.process = ? AND k.key = json_extract(a.value, '$[0]')
WHERE true
ON CONFLICT (interface, version, customer, hour, bucket) DO UPDATE SET
    calls = calls + excluded.calls,
    errors = errors + excluded.errors,
    first_call = min(first_call, excluded.first_call),
    last_call = max(last_call, excluded.last_call),
    max_duration = max(max_duration, excluded.max_duration)
"""
_LOG_COLUMNS = (
    "call_id, parent_id, interface, version, customer, started, duration, status, error_type, error, plugins, process"
)


# Upper bounds of the latency buckets in nanoseconds, for bisect on a record's duration.
_UPPERS_NS = [bucket_upper(b) * 1e9 for b in range(BUCKET_COUNT - 1)]


def aggregate(calls: Sequence[Sequence[Any]], wall_offset: float) -> list[list[Any]]:
    """[key, hour, bucket, calls, errors, first call, last call, longest] per group of raw calls.

    Integer arithmetic on nanoseconds until the end: this loop is the
    writer's main cost in Python.
    """
    groups: dict[tuple[int, int, int], list[int]] = {}
    bucket_of_ns, uppers = bisect.bisect_left, _UPPERS_NS
    offset, hour = int(wall_offset * 1e9), HOUR * 10**9
    for key, start, nanoseconds, status in map(_AGGREGATED, calls):
        group = (key, (start + offset) // hour, bucket_of_ns(uppers, nanoseconds))
        totals = groups.get(group)
        if totals is None:
            groups[group] = [1, status == "error", start, start, nanoseconds]
            continue
        totals[0] += 1
        if start < totals[2]:
            totals[2] = start
        elif start > totals[3]:
            totals[3] = start
        if nanoseconds > totals[4]:
            totals[4] = nanoseconds
        if status == "error":
            totals[1] += 1
    return [
        [*group, count, errors, first * 1e-9 + wall_offset, last * 1e-9 + wall_offset, longest * 1e-9]
        for group, (count, errors, first, last, longest) in groups.items()
    ]


_AGGREGATED = itemgetter(1, 2, 3, 4)
# No circular-reference check (the records are flat data) and no spaces: a third faster.
_JSON = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode


def _filters(interface: str | None, customer: str | None) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if interface is not None:
        clauses.append("interface = ?")
        params.append(interface)
    if customer is not None:
        clauses.append("customer = ?")
        params.append(customer)
    return clauses, params


def _where(clauses: list[str]) -> str:
    return " WHERE " + " AND ".join(clauses) if clauses else ""


def _none(value: Any, empty: Any) -> Any:
    return None if value == empty else value


class DatabaseStore:
    """Telemetry in the catalog database: the tables of namespace ``taskcatalog`` (``schema/``)."""

    def __init__(self, db: Connection) -> None:
        self.db = db
        self._processes: dict[str, int] = {}  # call id prefix -> taskcatalog_processes.id

    def _process(self, prefix: str) -> int:
        """This process's row id in taskcatalog_processes (made on its first write)."""
        found = self._processes.get(prefix)
        if found is None:
            db = self.db
            db._execute(
                "INSERT OR IGNORE INTO taskcatalog_processes (prefix, pid, host, first_seen) VALUES (?, ?, ?, ?)",
                (prefix, os.getpid(), socket.gethostname(), time.time()),
            )
            found = self._processes[prefix] = int(
                db._execute("SELECT id FROM taskcatalog_processes WHERE prefix = ?", (prefix,))[0][0]
            )
        return found

    def write(self, batch: Batch, prefix: str, wall_offset: float) -> None:
        """Store one batch in one transaction; the aggregates are updated in it from the new records."""
        if not math.isfinite(wall_offset):
            raise ValueError(f"the clock offset {wall_offset!r} is not a number")
        db = self.db
        with db.session():
            process = self._process(prefix)
            for sql, keys in ((_INSERT_CALL_KEYS, batch.call_keys), (_INSERT_SPAN_KEYS, batch.span_keys)):
                if keys:
                    db._execute(sql.format(process=process), (_JSON(keys),))
            calls = batch.calls
            if calls:
                starts = list(map(itemgetter(2), calls))
                db._execute(_INSERT_BATCH, (
                    process, wall_offset, len(calls), min(starts) * 1e-9 + wall_offset,
                    max(starts) * 1e-9 + wall_offset, _JSON(calls),
                ))
                db._execute(_ADD_STATS, (_JSON(aggregate(calls, wall_offset)), process))

    def prune(self, before: float) -> int:
        """Delete the batches whose calls all started before ``before``; the aggregates stay."""
        db = self.db
        with db.session():
            removed = db._execute(
                "SELECT coalesce(sum(calls), 0) FROM taskcatalog_call_batches WHERE latest < ?", (before,)
            )[0][0]
            db._execute("DELETE FROM taskcatalog_call_batches WHERE latest < ?", (before,))
        return int(removed)

    def stats(self, interface: str | None, customer: str | None, since: float | None) -> list[CallStats]:
        clauses, params = _filters(interface, customer)
        if since is not None:
            clauses.append("hour >= ?")
            params.append(int(since // HOUR))
        groups: dict[tuple[Any, Any, Any], list[tuple[int, int, int, float]]] = {}
        for name, version, who, bucket, calls, errors, longest in self.db._execute(
            "SELECT interface, version, customer, bucket, sum(calls), sum(errors), max(max_duration)"
            f" FROM taskcatalog_call_stats{_where(clauses)} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
            params,
        ):
            groups.setdefault((name, version, who), []).append((bucket, calls, errors, longest))
        found = []
        for (name, version, who), rows in groups.items():
            longest = max(row[3] for row in rows)
            p50, p95 = percentiles([(row[0], row[1]) for row in rows], longest)
            calls, errors = sum(row[1] for row in rows), sum(row[2] for row in rows)
            found.append(CallStats(name, _none(version, 0), _none(who, ""), calls, errors, p50, p95, longest))
        return found

    def usage(self, interface: str | None, customer: str | None) -> list[UsageRow]:
        clauses, params = _filters(interface, customer)
        rows = self.db._execute(
            "SELECT interface, version, customer, sum(calls), min(first_call), max(last_call)"
            f" FROM taskcatalog_call_stats{_where(clauses)} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            params,
        )
        return [(name, _none(version, 0), _none(who, ""), calls, first, last) for name, version, who, calls, first, last in rows]

    def history(
        self, interface: str | None, customer: str | None, since: float | None, status: str | None, limit: int
    ) -> list[CallRecord]:
        """Newest batches first, the calls of each newest first, until ``limit`` calls matched."""
        clauses, params = _filters(interface, customer)
        if since is not None:
            clauses.append("started >= ?")
            params.append(since)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        where = " AND ".join(["batch = ?", *clauses])
        batches = self.db._execute(
            "SELECT id FROM taskcatalog_call_batches" + ("" if since is None else " WHERE latest >= ?") + " ORDER BY id DESC",
            () if since is None else (since,),
        )
        rows: list[tuple[Any, ...]] = []
        for (batch,) in batches:
            if len(rows) >= limit:
                break
            rows.extend(self.db._execute(
                f"SELECT {_LOG_COLUMNS} FROM taskcatalog_call_log WHERE {where} ORDER BY position DESC LIMIT ?",
                [batch, *params, limit - len(rows)],
            ))
        names = self._plugin_names({row[11] for row in rows if row[10] != "[]"})
        records = []
        for call_id, parent, name, version, who, started, duration, status_, etype, error, plugins, process in rows:
            prefix, _, number = call_id.rpartition("-")
            spans = _spans(json.loads(plugins), lambda key: names[process, key])  # noqa: B023 - used at once
            row = (prefix, int(number), parent, name, version, who, started, duration, status_, etype, error)
            records.append(_record(row, spans))
        return records

    def _plugin_names(self, processes: set[int]) -> dict[tuple[int, int], tuple[Any, ...]]:
        """(process, plugin key) -> (slot, plugin) for the processes whose plugin runs are shown."""
        names: dict[tuple[int, int], tuple[Any, ...]] = {}
        for process in processes:
            for key, slot, plugin in self.db._execute(
                "SELECT key, slot, plugin FROM taskcatalog_plugin_keys WHERE process = ?", (process,)
            ):
                names[process, key] = (slot, plugin)
        return names
