"""Where call records live: the catalog database, or memory when there is none.

In the database (schema/sqlite/0001_telemetry.sql, 0004_call_totals.sql),
raw records are kept in batches, one row per write, pruned after the
retention period. Two kinds of aggregate are kept up to date in the same
transaction as each batch, from its records: per (interface, version,
customer, hour, latency bucket) counts, first and last call and the longest
call, and so a latency histogram per hour (``records.py``); and the same
totals per (interface, version, customer) for all time, the histogram as one
JSON object. ``stats()`` and ``usage()`` read the totals, one row per group,
so they answer as fast with a million records as with ten, however many
hours the records span, and survive the pruning of the records they came
from; ``stats(since=...)`` sums the hours since, at the resolution of an
hour: the hour containing ``since`` counts whole.

Writes (and pruning) go through a connection of the store's own that waits
at most ``LOCK_WAIT`` seconds for another connection's write lock: a write
that cannot get it fails and is retried later by the writer (telemetry.py),
so ``close()``, ``stats()`` and the end of a process never wait the catalog
database's whole busy timeout (30 s by default) behind someone else's lock.

In memory, the newest calls (a bounded buffer, no writer) are all there is:
``stats``, ``usage`` and ``history`` are computed from them when asked, with
exact percentiles and ``since``.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import json
import math
import os
import pickle
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import resources
from itertools import compress, islice, repeat
from operator import and_, itemgetter, le
from typing import TYPE_CHECKING, Any

from .db import connect
from .db.migrations import Migration
from .errors import DatabaseError
from .records import BUCKET_COUNT, HOUR, CallRecord, CallStats, PluginSpan, bucket_upper, percentiles, utc
from .telemetry import Batch, Buffers, RawCall

if TYPE_CHECKING:
    from .db import Connection

#: Seconds a telemetry write waits for another connection's write lock before
#: it gives up, to be retried by the writer with a growing pause.
LOCK_WAIT = 1.0

__all__ = ["MemoryStore", "DatabaseStore", "UsageRow", "catalog_dialects", "catalog_migrations", "NAMESPACE", "LOCK_WAIT"]

#: The migration namespace of the catalog's own tables.
NAMESPACE = "taskcatalog"

Key = tuple[str, int | None, str | None]  # (interface, version, customer)
UsageRow = tuple[str, int | None, str | None, int, float, float]  # key, calls, first, last
# (prefix, number, parent, interface, version, customer, started, duration, status, error_type, error)
Row = tuple[Any, ...]

def catalog_dialects() -> list[str]:
    """The engines the catalog's own tables exist for (a folder of migrations each)."""
    folder = resources.files("taskcatalog").joinpath("schema")
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("_"))


def catalog_migrations(dialect: str) -> list[Migration]:
    """The catalog's own migrations for an engine, shipped as package data (``schema/<dialect>/``)."""
    folder = resources.files("taskcatalog").joinpath("schema", dialect)
    migrations: list[Migration] = []
    if not folder.is_dir():  # an engine the catalog has no tables for yet
        return migrations
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
        for record in map(unfold, list(self.buffers.calls)):
            number, key, start, nanoseconds, status, parent, etype, error, runs = record
            name, version, who = keys[key]
            if (interface is not None and name != interface) or (customer is not None and who != customer):
                continue
            started = start * 1e-9 + offset
            if since is not None and started < since:
                continue
            rows.append((prefix, number, parent, name, version, who, started, nanoseconds * 1e-9, status, etype, error, runs))
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


def _spans(runs: Sequence[tuple[int, int]], names: Callable[[Any], tuple[Any, ...]]) -> list[PluginSpan]:
    """PluginSpans from (plugin key, duration ns) pairs; ``names`` maps a key to (slot, plugin)."""
    found = []
    for key, nanoseconds in runs:
        slot, plugin = names(key)
        found.append(PluginSpan(slot, plugin, nanoseconds * 1e-9))
    return found


# Keys and records reach the database as JSON arrays, one statement each
# (see telemetry.py for why not executemany); the process's id is the same
# for a whole batch and is written into the statements as a literal int.
# Each engine takes JSON apart its own way, so these statements come in one
# spelling per dialect (``_WRITES``); the others are written once, with ``?``.
_INSERT_BATCH = (
    "INSERT INTO taskcatalog_call_batches (process, clock, calls, earliest, latest, records)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class _Writes:
    """The statements that write a batch's keys and aggregates, in one engine's SQL."""

    call_keys: str
    span_keys: str
    stats: str
    totals: str


_SQLITE_WRITES = _Writes(
    call_keys="""
INSERT OR IGNORE INTO taskcatalog_call_keys (process, key, interface, version, customer)
SELECT {process}, json_extract(value, '$[0]'), json_extract(value, '$[1]'),
       coalesce(json_extract(value, '$[2]'), 0), coalesce(json_extract(value, '$[3]'), '')
FROM json_each(?)
""",
    span_keys="""
INSERT OR IGNORE INTO taskcatalog_plugin_keys (process, key, slot, plugin)
SELECT {process}, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')
FROM json_each(?)
""",
    # The aggregates of a batch, computed in Python (cheaper than having SQLite
    # take the JSON apart again), added in one statement, named through the keys.
    # CROSS JOIN makes SQLite read the batch's groups in the outer loop and look
    # each key up by its primary key; left to itself it scans all the process's
    # keys and, for each, the whole JSON array: a write then costs keys x groups.
    stats="""
INSERT INTO taskcatalog_call_stats
    (interface, version, customer, hour, bucket, calls, errors, first_call, last_call, max_duration)
SELECT k.interface, k.version, k.customer, json_extract(a.value, '$[1]'), json_extract(a.value, '$[2]'),
       json_extract(a.value, '$[3]'), json_extract(a.value, '$[4]'), json_extract(a.value, '$[5]'),
       json_extract(a.value, '$[6]'), json_extract(a.value, '$[7]')
FROM json_each(?) AS a CROSS JOIN taskcatalog_call_keys AS k
    ON k.process = ? AND k.key = json_extract(a.value, '$[0]')
WHERE true
ON CONFLICT (interface, version, customer, hour, bucket) DO UPDATE SET
    calls = calls + excluded.calls,
    errors = errors + excluded.errors,
    first_call = min(first_call, excluded.first_call),
    last_call = max(last_call, excluded.last_call),
    max_duration = max(max_duration, excluded.max_duration)
""",
    # The totals of a batch per (interface, version, customer), added the same
    # way; histograms are summed bucket by bucket inside SQLite (0004_call_totals).
    totals="""
INSERT INTO taskcatalog_call_totals
    (interface, version, customer, calls, errors, first_call, last_call, max_duration, histogram)
SELECT k.interface, k.version, k.customer, json_extract(a.value, '$[1]'), json_extract(a.value, '$[2]'),
       json_extract(a.value, '$[3]'), json_extract(a.value, '$[4]'), json_extract(a.value, '$[5]'),
       json_extract(a.value, '$[6]')
FROM json_each(?) AS a CROSS JOIN taskcatalog_call_keys AS k
    ON k.process = ? AND k.key = json_extract(a.value, '$[0]')
WHERE true
ON CONFLICT (interface, version, customer) DO UPDATE SET
    calls = calls + excluded.calls,
    errors = errors + excluded.errors,
    first_call = min(first_call, excluded.first_call),
    last_call = max(last_call, excluded.last_call),
    max_duration = max(max_duration, excluded.max_duration),
    histogram = (
        SELECT json_group_object(bucket, calls) FROM (
            SELECT CAST(key AS INTEGER) AS bucket, sum(value) AS calls
            FROM (SELECT key, value FROM json_each(histogram) UNION ALL SELECT key, value FROM json_each(excluded.histogram))
            GROUP BY 1
            ORDER BY 1
        )
    )
""",
)
# PostgreSQL: the same statements with its JSON functions (the JSON is cast
# from text: schema/postgresql/0001_telemetry.sql keeps it as TEXT).
_GROUPS = """FROM json_array_elements(%s::json) AS a (value)
JOIN taskcatalog_call_keys AS k ON k.process = %s AND k.key = (a.value ->> 0)::bigint"""
_POSTGRES_WRITES = _Writes(
    call_keys="""
INSERT INTO taskcatalog_call_keys (process, key, interface, version, customer)
SELECT {process}, (a.value ->> 0)::bigint, a.value ->> 1, coalesce((a.value ->> 2)::bigint, 0), coalesce(a.value ->> 3, '')
FROM json_array_elements(%s::json) AS a (value)
ON CONFLICT DO NOTHING
""",
    span_keys="""
INSERT INTO taskcatalog_plugin_keys (process, key, slot, plugin)
SELECT {process}, (a.value ->> 0)::bigint, (a.value -> 1)::jsonb, a.value ->> 2
FROM json_array_elements(%s::json) AS a (value)
ON CONFLICT DO NOTHING
""",
    stats=f"""
INSERT INTO taskcatalog_call_stats AS s
    (interface, version, customer, hour, bucket, calls, errors, first_call, last_call, max_duration)
SELECT k.interface, k.version, k.customer, (a.value ->> 1)::bigint, (a.value ->> 2)::bigint,
       (a.value ->> 3)::bigint, (a.value ->> 4)::bigint, (a.value ->> 5)::double precision,
       (a.value ->> 6)::double precision, (a.value ->> 7)::double precision
{_GROUPS}
ON CONFLICT (interface, version, customer, hour, bucket) DO UPDATE SET
    calls = s.calls + excluded.calls,
    errors = s.errors + excluded.errors,
    first_call = least(s.first_call, excluded.first_call),
    last_call = greatest(s.last_call, excluded.last_call),
    max_duration = greatest(s.max_duration, excluded.max_duration)
""",
    totals=f"""
INSERT INTO taskcatalog_call_totals AS t
    (interface, version, customer, calls, errors, first_call, last_call, max_duration, histogram)
SELECT k.interface, k.version, k.customer, (a.value ->> 1)::bigint, (a.value ->> 2)::bigint,
       (a.value ->> 3)::double precision, (a.value ->> 4)::double precision, (a.value ->> 5)::double precision,
       (a.value -> 6)::text
{_GROUPS}
ON CONFLICT (interface, version, customer) DO UPDATE SET
    calls = t.calls + excluded.calls,
    errors = t.errors + excluded.errors,
    first_call = least(t.first_call, excluded.first_call),
    last_call = greatest(t.last_call, excluded.last_call),
    max_duration = greatest(t.max_duration, excluded.max_duration),
    histogram = (
        SELECT json_object_agg(h.bucket, h.calls ORDER BY h.bucket)::text FROM (
            SELECT e.key::bigint AS bucket, sum(e.value::bigint) AS calls
            FROM (SELECT * FROM json_each_text(t.histogram::json)
                  UNION ALL SELECT * FROM json_each_text(excluded.histogram::json)) AS e
            GROUP BY 1
        ) AS h
    )
""",
)
_WRITES = {"sqlite": _SQLITE_WRITES, "postgresql": _POSTGRES_WRITES}
#: Batches read per query by ``history``.
_HISTORY_PAGE = 64


# Upper bounds of the latency buckets in whole nanoseconds, for bisect on a
# record's duration: for an integer d, d <= floor(upper) exactly when
# d <= upper, and comparing int with int is twice as fast as int with float.
_UPPERS_NS = [math.floor(bucket_upper(b) * 1e9) for b in range(BUCKET_COUNT - 1)]
_bucket_ns = partial(bisect.bisect_left, _UPPERS_NS)
_KEY, _START, _DURATION = itemgetter(1), itemgetter(2), itemgetter(3)


def aggregate(calls: Sequence[Sequence[Any]], wall_offset: float) -> list[list[Any]]:
    """[key, hour, bucket, calls, errors, first call, last call, longest] per group of raw calls.

    A group is a call key's calls of one hour in one latency bucket; its
    first and last call are those of the key's calls in that hour (every
    bucket row of the hour carries the same two: read together, as every
    reader does, they give the hour's, and the totals', first and last call).

    This is the writer's main cost in Python, held against the calls for the
    GIL, so the records are counted in C: by (key, duration in ns), which
    fast calls repeat (a batch of 20,000 holds a few hundred pairs), then
    those pairs are folded into buckets. The first and last start per key
    come from the columns in C too while starts are in order (one thread
    recording), from a loop otherwise. A batch normally spans well under an
    hour; one that does not is taken an hour at a time. Errors, rare, are
    counted apart, among the records in the longer form (telemetry.RawCall).
    Integer nanoseconds until the end. Columns are tuples: the collector
    stops tracking a tuple of ints the first time it meets it, where it
    would walk a list at every collection the calls set off.
    """
    starts = tuple(map(_START, calls))
    offset, hour_ns = int(wall_offset * 1e9), HOUR * 10**9
    hour = (min(starts) + offset) // hour_ns
    if (max(starts) + offset) // hour_ns != hour:
        hours: dict[int, list[Sequence[Any]]] = {}
        for call, start in zip(calls, starts):
            hours.setdefault((start + offset) // hour_ns, []).append(call)
        return [group for part in hours.values() for group in aggregate(part, wall_offset)]
    keys = tuple(map(_KEY, calls))
    groups: dict[tuple[int, int], list[int]] = {}  # (key, bucket) -> [calls, errors, longest]
    longer = False  # any record in the longer form: odd key (telemetry.RawCall)
    for (key, nanoseconds), count in Counter(zip(keys, map(_DURATION, calls))).items():
        if key & 1:
            longer = True
            key -= 1
        group = key, _bucket_ns(nanoseconds)
        sums = groups.get(group)
        if sums is None:
            groups[group] = [count, 0, nanoseconds]
        else:
            sums[0] += count
            if nanoseconds > sums[2]:
                sums[2] = nanoseconds
    if longer:  # errors are among them; their keys are made even for the first and last call
        for call in compress(calls, map(and_, keys, repeat(1))):
            if call[4] == "error":
                groups[call[1] - 1, _bucket_ns(call[3])][1] += 1
        keys = tuple(map(and_, keys, repeat(-2)))
    span = _first_and_last(keys, starts, {key for key, _ in groups})
    return [
        [key, hour, bucket, count, errors, span[key][0] * 1e-9 + wall_offset, span[key][1] * 1e-9 + wall_offset,
         longest * 1e-9]
        for (key, bucket), (count, errors, longest) in groups.items()
    ]


def _first_and_last(keys: Sequence[int], starts: Sequence[int], seen: set[int]) -> dict[int, tuple[int, int]]:
    """The first and last start per key: the keys of ``keys``, ``seen``, are known."""
    if len(seen) == 1:
        return {keys[0]: (min(starts), max(starts))}
    if all(map(le, starts, islice(starts, 1, None))):  # in order: the last start kept wins
        last = dict(zip(keys, starts))
        first = dict(zip(reversed(keys), reversed(starts)))
        return {key: (first[key], last[key]) for key in seen}
    span: dict[int, tuple[int, int]] = {}
    for key, start in zip(keys, starts):
        found = span.get(key)
        if found is None:
            span[key] = (start, start)
        elif start < found[0]:
            span[key] = (start, found[1])
        elif start > found[1]:
            span[key] = (found[0], start)
    return span


#: How the writer packs a batch's records (schema 0006_packed_records): pinned, so that
#: an older Python reading the database (another host, say) can unpack it.
PICKLE_PROTOCOL = 5


#: The first value of a batch packed since the short record forms (telemetry.RawCall):
#: ``(SHORT_RECORDS, [record, ...])``. A batch packed before is a bare list (0006_packed_records).
SHORT_RECORDS = 2


def pack(calls: Sequence[RawCall]) -> bytes:
    """The records as stored: a pickle of ``(SHORT_RECORDS, [record tuples as recorded])``.

    This runs on the writer thread holding the GIL, which the calling threads
    then wait for. Pickling plain tuples of ints, strings and None is done in
    C without turning numbers into text: about 70 ns a record here, where
    the JSON text the schema first stored cost about 600 ns. Any str pickles
    (a lone surrogate or a NUL, which text columns refuse, included).

    The pickler's memo is off (``Pickler.fast``): it would remember every
    record tuple, in case one came twice, in a table as large as the batch,
    a third of the pickling time; records are flat, so nothing in them can
    refer back. The attribute is documented as deprecated, though it has
    never warned: without it the memo is used, and the pickle reads the same.
    """
    out = io.BytesIO()
    pickler = pickle.Pickler(out, PICKLE_PROTOCOL)
    with contextlib.suppress(AttributeError):
        pickler.fast = True
    pickler.dump((SHORT_RECORDS, calls if type(calls) is list else list(calls)))
    return out.getvalue()


class _RecordsOnly(pickle.Unpickler):
    """Unpickles plain data only: what a database holds is not trusted to name code to run."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"telemetry records hold plain data only, not {module}.{name}")


#: A record as readers see it, whichever way it was stored: (number, call key,
#: start ns, duration ns, status, parent call id, error type, error, runs),
#: runs being (plugin key, duration ns) pairs.
Record = tuple[int, int, int, int, str, "str | None", "str | None", "str | None", list[tuple[int, int]]]


def unfold(record: Sequence[Any]) -> Record:
    """A record in one of telemetry.RawCall's two forms, as a ``Record``."""
    key = record[1]
    if key & 1:
        number, _, start, nanoseconds, status, parent, etype, error = record[:8]
        return number, key - 1, start, nanoseconds, status, parent, etype, error, list(zip(record[8::2], record[9::2]))
    return record[0], key, record[2], record[3], "ok", None, None, None, list(zip(record[4::2], record[5::2]))


def _unfold_older(record: Sequence[Any]) -> Record:
    """A record stored before the short forms: its runs as (plugin key, start, duration), nested
    in JSON (before 0006), flat in a pickled list (0006)."""
    number, key, start, nanoseconds, status, parent, etype, error = record[:8]
    triples = record[8] if len(record) == 9 else zip(record[8::3], record[9::3], record[10::3])
    return number, key, start, nanoseconds, status, parent, etype, error, [(k, d) for k, _, d in triples]


def unpack(stored: str | bytes | memoryview) -> list[Record]:
    """A batch's records, each as a ``Record``: stored as a pickle of the short forms (now), of
    a list of longer tuples (0006_packed_records), or as JSON text (before; bytes on PostgreSQL)."""
    if isinstance(stored, str):
        return list(map(_unfold_older, json.loads(stored)))
    data = bytes(stored)
    if data[:1] == b"[":
        return list(map(_unfold_older, json.loads(data)))
    packed = _RecordsOnly(io.BytesIO(data)).load()
    if type(packed) is list:
        return list(map(_unfold_older, packed))
    if type(packed) is tuple and packed[:1] == (SHORT_RECORDS,):
        return list(map(unfold, packed[1]))
    form = packed[0] if type(packed) is tuple and packed else type(packed).__name__
    raise ValueError(f"telemetry records packed in an unknown form ({form!r}): written by a newer taskcatalog?")


def totals(groups: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """[key, calls, errors, first call, last call, longest, {bucket: calls}] per key of ``aggregate``'s groups."""
    found: dict[int, list[Any]] = {}
    for key, _, bucket, calls, errors, first, last, longest in groups:
        row = found.get(key)
        if row is None:
            found[key] = [key, calls, errors, first, last, longest, {bucket: calls}]
            continue
        row[1] += calls
        row[2] += errors
        row[3] = min(row[3], first)
        row[4] = max(row[4], last)
        row[5] = max(row[5], longest)
        histogram = row[6]
        histogram[bucket] = histogram.get(bucket, 0) + calls
    for row in found.values():
        row[6] = dict(sorted(row[6].items()))
    return list(found.values())


# No circular-reference check (the records are flat data) and no spaces: a
# third faster. Text as it is (no \uXXXX escapes): SQLite stores UTF-8, and
# an all-ASCII result, the usual one, is known in O(1) by str.isascii().
_ENCODE = json.JSONEncoder(check_circular=False, separators=(",", ":"), ensure_ascii=False).encode
# A lone surrogate (an error message holding a file name decoded with
# surrogateescape, say) cannot be encoded as UTF-8, so sqlite3 could not bind
# the text; escaped as \uXXXX, SQLite would store invalid UTF-8 that sqlite3
# cannot read back, and every history(), stats() or usage() meeting it would
# fail. Only a batch holding a non-ASCII character is searched, and only one
# holding a surrogate is mended, in Python.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# NUL (an interface name or a message holding one), which the encoder writes
# as \u0000: PostgreSQL's text cannot hold it, so its JSON functions refuse to
# take such a string apart. A batch whose keys held one could never be written,
# nor any batch after it (each carries the keys not written yet); a record
# holding one would fail every history() that read it. SQLite cut the text at
# it. It is written out as \x00 text on every engine. The escape is looked
# for only in a batch holding a backslash (memchr, a nanosecond a record),
# which the usual batch, without messages, does not.
_NUL = "\\u0000"
_MENDED = re.compile(r"[\x00\ud800-\udfff]")


def _mend(value: Any) -> Any:
    """``value`` with NUL and lone surrogates in its strings written as ``\\x00`` and ``\\udXXX`` text."""
    if type(value) is str:
        if _MENDED.search(value):
            value = value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, (list, tuple)):
        return [_mend(item) for item in value]
    return value


def _json(value: Any) -> str:
    """``value`` as compact JSON text that either engine stores and reads back."""
    text = _ENCODE(value)
    if ("\\" in text and _NUL in text) or (not text.isascii() and _SURROGATE.search(text)):
        text = _ENCODE(_mend(value))
    return text


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


def _identity(path: Any) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``, or None when there is none."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _writer_for(db: Connection, lock_wait: float) -> Connection:
    """A connection to ``db``'s database that waits at most ``lock_wait`` for a lock another holds.

    ``db`` itself where there is nothing to open twice (a memory database
    lives in its one connection, whose threads take turns) or the engine is
    neither SQLite nor PostgreSQL.
    """
    if db.dialect == "postgresql":
        return connect(db.url, timeout=lock_wait, connect_timeout=getattr(db, "connect_timeout", 10.0))
    path = getattr(db, "path", None)
    if db.dialect != "sqlite" or path is None:
        return db
    return connect(
        path,
        timeout=lock_wait,
        synchronous=getattr(db, "synchronous", "NORMAL"),
        foreign_keys=getattr(db, "foreign_keys", True),
    )


class DatabaseStore:
    """Telemetry in the catalog database: the tables of namespace ``taskcatalog`` (``schema/``).

    Reads go through ``db``; writes through ``writer``, a connection of the
    store's own waiting at most ``lock_wait`` seconds for a lock another
    connection holds. On PostgreSQL it is opened at the first write, in the
    thread that writes: every thread of a PostgreSQL connection holds a
    server connection of its own, and the writer thread needs only this one.
    """

    def __init__(self, db: Connection, *, lock_wait: float | None = None) -> None:
        self.db = db
        writes = _WRITES.get(db.dialect)
        if writes is None:
            raise DatabaseError(f"{db.label}: the catalog records no telemetry on {db.dialect or 'this engine'} yet")
        self._writes = writes
        self._lock_wait = LOCK_WAIT if lock_wait is None else lock_wait
        self._writer = None if db.dialect == "postgresql" else _writer_for(db, self._lock_wait)
        self._opening = threading.Lock()
        self._insert_batch = db._qmark(_INSERT_BATCH)
        self._processes: dict[str, int] = {}  # call id prefix -> taskcatalog_processes.id
        self._path = getattr(db, "path", None)
        self._file = None if self._path is None else _identity(self._path)

    def _check_file(self) -> None:
        """Refuse to write once the database file was removed or replaced since it was opened.

        SQLite would go on writing into the open file, which nothing can read
        any more: every record written from then on would be lost unseen.
        """
        if self._file is not None and _identity(self._path) != self._file:
            raise DatabaseError(
                f"the database {self.db.label} was removed or replaced after it was opened: records written"
                f" to the open file would be lost; open the catalog again",
                path=self.db.label,
            )

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of a query written with ``?`` placeholders, read through ``db``."""
        return self.db._execute(self.db._qmark(sql), params)

    @property
    def writer(self) -> Connection:
        if self._writer is None:
            with self._opening:
                if self._writer is None:
                    self._writer = _writer_for(self.db, self._lock_wait)
        return self._writer

    def close(self) -> None:
        """Close the writer's own connection (``db`` is the catalog's to close)."""
        if self._writer is not None and self._writer is not self.db:
            self._writer.close()

    def _process(self, prefix: str) -> int:
        """This process's row id in taskcatalog_processes, made in the current transaction if need be.

        ``write`` remembers it once that transaction has committed: a row made
        by a write that failed is gone, and its id may go to another process.
        """
        found = self._processes.get(prefix)
        if found is None:
            db = self.writer
            db._execute(
                db._qmark(
                    "INSERT INTO taskcatalog_processes (prefix, pid, host, first_seen) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT DO NOTHING"
                ),
                (prefix, os.getpid(), socket.gethostname(), time.time()),
            )
            found = int(db._execute(db._qmark("SELECT id FROM taskcatalog_processes WHERE prefix = ?"), (prefix,))[0][0])
        return found

    def write(self, batch: Batch, prefix: str, wall_offset: float) -> None:
        """Store one batch in one transaction; the aggregates are updated in it from the new records.

        The records are encoded and aggregated before the transaction begins:
        the write lock, which every process recording into the file shares,
        is held only while SQLite stores them.
        """
        if not math.isfinite(wall_offset):
            raise ValueError(f"the clock offset {wall_offset!r} is not a number")
        calls = batch.calls
        keys = [
            (sql, _json(rows))
            for sql, rows in ((self._writes.call_keys, batch.call_keys), (self._writes.span_keys, batch.span_keys))
            if rows
        ]
        if calls:
            groups = aggregate(calls, wall_offset)
            earliest, latest = min(group[5] for group in groups), max(group[6] for group in groups)
            records, hourly, overall = pack(calls), _json(groups), _json(totals(groups))
        self._check_file()
        db = self.writer
        with db.session():
            process = self._process(prefix)
            for sql, text in keys:
                db._execute(sql.format(process=process), (text,))
            if calls:
                db._execute(self._insert_batch, (process, wall_offset, len(calls), earliest, latest, records))
                db._execute(self._writes.stats, (hourly, process))
                db._execute(self._writes.totals, (overall, process))
        self._processes[prefix] = process

    def prune(self, before: float) -> int:
        """Delete the batches whose calls all started before ``before``; the aggregates stay."""
        db = self.writer
        with db.session():
            removed = db._execute(
                db._qmark("SELECT coalesce(sum(calls), 0) FROM taskcatalog_call_batches WHERE latest < ?"), (before,)
            )[0][0]
            db._execute(db._qmark("DELETE FROM taskcatalog_call_batches WHERE latest < ?"), (before,))
        return int(removed)

    def stats(self, interface: str | None, customer: str | None, since: float | None) -> list[CallStats]:
        """From the totals, one row per group; with ``since``, from the hours since (the hour of ``since`` whole)."""
        clauses, params = _filters(interface, customer)
        found = []
        if since is None:
            for name, version, who, calls, errors, longest, histogram in self._read(
                "SELECT interface, version, customer, calls, errors, max_duration, histogram"
                f" FROM taskcatalog_call_totals{_where(clauses)} ORDER BY 1, 2, 3",
                params,
            ):
                p50, p95 = percentiles([(int(bucket), count) for bucket, count in json.loads(histogram).items()], longest)
                found.append(CallStats(name, _none(version, 0), _none(who, ""), calls, errors, p50, p95, longest))
            return found
        clauses.append("hour >= ?")
        params.append(int(since // HOUR))
        groups: dict[tuple[Any, Any, Any], list[tuple[int, int, int, float]]] = {}
        for name, version, who, bucket, calls, errors, longest in self._read(
            # CAST: PostgreSQL sums integers as numeric (Decimal in Python).
            "SELECT interface, version, customer, bucket, CAST(sum(calls) AS BIGINT), CAST(sum(errors) AS BIGINT),"
            " max(max_duration)"
            f" FROM taskcatalog_call_stats{_where(clauses)} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
            params,
        ):
            groups.setdefault((name, version, who), []).append((bucket, calls, errors, longest))
        for (name, version, who), rows in groups.items():
            longest = max(row[3] for row in rows)
            p50, p95 = percentiles([(row[0], row[1]) for row in rows], longest)
            calls, errors = sum(row[1] for row in rows), sum(row[2] for row in rows)
            found.append(CallStats(name, _none(version, 0), _none(who, ""), calls, errors, p50, p95, longest))
        return found

    def usage(self, interface: str | None, customer: str | None) -> list[UsageRow]:
        clauses, params = _filters(interface, customer)
        rows = self._read(
            "SELECT interface, version, customer, calls, first_call, last_call"
            f" FROM taskcatalog_call_totals{_where(clauses)} ORDER BY 1, 2, 3",
            params,
        )
        return [(name, _none(version, 0), _none(who, ""), calls, first, last) for name, version, who, calls, first, last in rows]

    def history(
        self, interface: str | None, customer: str | None, since: float | None, status: str | None, limit: int
    ) -> list[CallRecord]:
        """The ``limit`` calls that started last, newest first.

        Batches are read by their latest start, newest first, a page at a
        time, and the calls of each by start; reading stops once the next
        batch started its last call before the oldest of the ``limit`` kept.
        (Batch order alone is not start order: a call is recorded when it
        ends, so a parent comes after its children, and processes interleave.)
        """
        if limit <= 0:
            return []
        kept: list[tuple[Any, ...]] = []  # (started, process, record, interface, version, customer), newest first
        started = itemgetter(0)
        calls: dict[int, dict[int, tuple[Any, ...]]] = {}  # process -> call key -> (interface, version, customer)
        after: tuple[float, int] | None = None  # (latest, id) of the last batch read
        done = False
        while not done:
            conditions = [] if since is None else ["latest >= ?"]
            values: list[Any] = [] if since is None else [since]
            if after is not None:
                conditions.append("(latest, id) < (?, ?)")
                values.extend(after)
            page = self._read(
                "SELECT id, latest, process, clock, records FROM taskcatalog_call_batches"
                + _where(conditions)
                + f" ORDER BY latest DESC, id DESC LIMIT {_HISTORY_PAGE}",
                values,
            )
            for batch, latest, process, clock, stored in page:
                if len(kept) >= limit and latest < started(kept[-1]):
                    done = True
                    break
                names = calls.get(process)
                if names is None:
                    names = calls[process] = self._call_names(process)
                found = []
                for record in unpack(stored):
                    name, version, who = names[record[1]]
                    if (interface is not None and name != interface) or (customer is not None and who != customer):
                        continue
                    if status is not None and record[4] != status:
                        continue
                    at = record[2] * 1e-9 + clock
                    if since is None or at >= since:
                        found.append((at, process, record, name, version, who))
                if found:
                    kept.extend(found)
                    kept.sort(key=started, reverse=True)  # stable: ties keep the order recorded
                    del kept[limit:]
                after = (latest, batch)
            else:
                done = len(page) < _HISTORY_PAGE
        prefixes = dict(self._read("SELECT id, prefix FROM taskcatalog_processes")) if kept else {}
        plugins = self._plugin_names({row[1] for row in kept})
        records = []
        for at, process, record, name, version, who in kept:
            number, _, _, nanoseconds, status_, parent, etype, error, runs = record
            # Read back as the JSON records were: text no engine could have stored written out.
            parent, etype, error = _mend(parent), _mend(etype), _mend(error)
            spans = _spans(runs, lambda key: plugins[process, key])  # noqa: B023 - used at once
            row = (prefixes[process], number, parent, name, version, who, at, nanoseconds * 1e-9, status_, etype, error)
            records.append(_record(row, spans))
        return records

    def _call_names(self, process: int) -> dict[int, tuple[Any, ...]]:
        """Call key -> (interface, version, customer) of a process (version 0 and customer '' are none)."""
        return {
            key: (name, _none(version, 0), _none(who, ""))
            for key, name, version, who in self._read(
                "SELECT key, interface, version, customer FROM taskcatalog_call_keys WHERE process = ?", (process,)
            )
        }

    def _plugin_names(self, processes: set[int]) -> dict[tuple[int, int], tuple[Any, ...]]:
        """(process, plugin key) -> (slot, plugin) for the processes whose plugin runs are shown."""
        names: dict[tuple[int, int], tuple[Any, ...]] = {}
        for process in processes:
            for key, slot, plugin in self._read(
                "SELECT key, slot, plugin FROM taskcatalog_plugin_keys WHERE process = ?", (process,)
            ):
                names[process, key] = (slot, plugin)
        return names
