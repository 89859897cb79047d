"""The numbers behind the HTML report, as plain data (``report_page.py`` draws them).

Everything is aggregated where it lives: in SQL from the telemetry aggregates
(``taskcatalog_call_stats``) and the newest raw batches when there is a
database, from the memory buffers otherwise. Lists are cut to what a page can
show (the ``TOP_*`` limits) and say how much was left out: the page stays the
same size whatever the number of calls, and the time grows with the rows of
the aggregate table, never with every record loaded into Python
(``bench/report.py``: a million records in about a second).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import CatalogError, brief
from .records import HOUR, percentiles, since_seconds, utc
from .results import Problem
from .stores import DatabaseStore, unpack

if TYPE_CHECKING:
    from .catalog import Catalog

__all__ = ["ReportData", "gather"]

TOP_CUSTOMERS = 25  # per interface in the usage grid
TOP_SERIES = 24  # interface versions in the latency small multiples
TOP_ERRORS = 20
TOP_PLUGINS = 15
TOP_BATCHES = 20
PLUGIN_WINDOW = 100_000  # newest calls whose plugin runs are looked at
DAY = 86400


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: int
    deprecated: str | None
    sunset: dt.date | None
    retired: bool
    slots: list[tuple[str, list[str]]]  # (slot, customers filling it)


@dataclass(frozen=True, slots=True)
class InterfaceInfo:
    name: str
    path: str
    distribution: str | None
    versions: list[VersionInfo]
    error: str | None = None  # why it does not load


@dataclass(frozen=True, slots=True)
class UsageGrid:
    """One interface: customers x versions, each cell (calls, last call) or absent."""

    interface: str
    versions: list[int | None]
    customers: list[str | None]
    cells: dict[tuple[str | None, int | None], tuple[int, float]]
    hidden_customers: int  # beyond TOP_CUSTOMERS


@dataclass(frozen=True, slots=True)
class Series:
    """p50/p95 (seconds) per period of one interface version."""

    interface: str
    version: int | None
    points: list[tuple[float, float, float, int]]  # (period start, p50, p95, calls)
    calls: int


@dataclass(frozen=True, slots=True)
class ErrorRate:
    interface: str
    customer: str | None
    calls: int
    errors: int

    @property
    def rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


@dataclass(frozen=True, slots=True)
class PluginTiming:
    interface: str
    slot: Any
    plugin: str
    runs: int
    mean: float
    longest: float


@dataclass(frozen=True, slots=True)
class BatchInfo:
    id: int
    interface: str
    version: int
    customer: str | None
    status: str
    description: str
    counts: dict[str, int]
    created_at: dt.datetime
    rate: float | None  # rows per second, once executed
    failures: list[tuple[int, str]]  # (row, "Type: message") of the first failed rows


@dataclass
class ReportData:
    generated_at: dt.datetime
    since: dt.datetime
    interface: str | None
    database: str | None
    interfaces: list[InterfaceInfo] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    usage: list[UsageGrid] = field(default_factory=list)
    hidden_interfaces: int = 0
    period: int = HOUR
    series: list[Series] = field(default_factory=list)
    hidden_series: int = 0
    errors: list[ErrorRate] = field(default_factory=list)
    plugins: list[PluginTiming] = field(default_factory=list)
    batches: list[BatchInfo] = field(default_factory=list)
    recorded: bool = False  # telemetry is on (anything could have been recorded)
    calls: int = 0  # calls recorded since ``since``


def _catalog_part(catalog: Catalog, interface: str | None, data: ReportData) -> None:
    names = [interface] if interface is not None else catalog.interfaces()
    for name in names:
        path = catalog.path_of(name)
        try:
            described = catalog.describe(name)
        except CatalogError as exc:
            data.interfaces.append(InterfaceInfo(name, path, catalog.origin(path), [], brief(exc, 300)))
            continue
        versions = []
        for entry in described["versions"]:
            deprecation = entry["deprecated"] or {}
            sunset = dt.date.fromisoformat(deprecation["sunset"]) if deprecation.get("sunset") else None
            slots = [(repr(s["slot"]), [c["customer"] for c in s["customers"]]) for s in entry["slots"]]
            versions.append(VersionInfo(entry["version"], deprecation.get("message"), sunset,
                                        bool(deprecation.get("retired")), slots))
        data.interfaces.append(InterfaceInfo(name, path, catalog.origin(path), versions))
    problems = catalog.check()
    data.problems = [p for p in problems if interface is None or p.interface in (None, interface)]


# One row per (interface, version, customer) ever called: calls and last call of all
# time (the usage grid asks who still calls a version, whenever they last did), and
# calls and errors since ``since`` (errors, the latency series' ranking).
Pair = tuple[str, int | None, str | None, int, float, int, int]


def _pairs(store: Any, interface: str | None, since: float) -> list[Pair]:
    """Every (interface, version, customer) with its totals: one pass over the aggregates."""
    if isinstance(store, DatabaseStore):
        # The aggregate table's primary key starts with (interface, version, customer):
        # SQLite groups it in key order, with no sort and no temporary table.
        where, params = ("", []) if interface is None else (" WHERE interface = ?", [interface])
        hour = int(since // HOUR)
        rows = store._read(
            "SELECT interface, version, customer, CAST(sum(calls) AS BIGINT), max(last_call),"
            " CAST(coalesce(sum(CASE WHEN hour >= ? THEN calls END), 0) AS BIGINT),"
            " CAST(coalesce(sum(CASE WHEN hour >= ? THEN errors END), 0) AS BIGINT)"
            f" FROM taskcatalog_call_stats{where} GROUP BY 1, 2, 3",
            [hour, hour, *params],
        )
        return [(n, None if v == 0 else v, None if c == "" else c, calls, last, recent, errors)
                for n, v, c, calls, last, recent, errors in rows]
    totals: dict[tuple[str, int | None, str | None], list[Any]] = {}
    for row in store._rows(interface, None, None):
        cell = totals.setdefault((row[3], row[4], row[5]), [0, 0.0, 0, 0])
        cell[0] += 1
        cell[1] = max(cell[1], row[6])
        if row[6] >= since:
            cell[2] += 1
            cell[3] += row[8] == "error"
    return [(n, v, c, calls, last, recent, errors) for (n, v, c), (calls, last, recent, errors) in totals.items()]


def _usage_part(pairs: list[Pair], data: ReportData, top_interfaces: int) -> None:
    by_interface: dict[str, list[tuple[int | None, str | None, int, float]]] = defaultdict(list)
    for name, version, customer, calls, last, _, _ in pairs:
        by_interface[name].append((version, customer, calls, last))
    ranked = sorted(by_interface, key=lambda n: (-sum(r[2] for r in by_interface[n]), n))
    data.hidden_interfaces = max(0, len(ranked) - top_interfaces)
    for name in sorted(ranked[:top_interfaces]):
        rows = by_interface[name]
        per_customer: dict[str | None, int] = defaultdict(int)
        for _, customer, calls, _ in rows:
            per_customer[customer] += calls
        customers = sorted(per_customer, key=lambda c: (-per_customer[c], c or ""))
        shown = set(customers[:TOP_CUSTOMERS])
        ordered = sorted(shown, key=lambda c: (c is None, c or ""))
        cells = {(c, v): (calls, last) for v, c, calls, last in rows if c in shown}
        versions = sorted({v for v, _, _, _ in rows}, key=_order)
        data.usage.append(UsageGrid(name, versions, ordered, cells, max(0, len(customers) - TOP_CUSTOMERS)))


def _period(since: float, now: float) -> int:
    """Hours for up to three days, else days: a readable number of points."""
    return HOUR if now - since <= 3 * DAY else DAY


def _order(version: int | None) -> int:
    return -1 if version is None else version


def _timeline_part(store: Any, pairs: list[Pair], interface: str | None, since: float, data: ReportData) -> None:
    """p50/p95 per period of the TOP_SERIES most called interface versions since ``since``."""
    totals: dict[tuple[str, int | None], int] = defaultdict(int)
    for name, version, _, _, _, recent, _ in pairs:
        if recent:
            totals[(name, version)] += recent
    ranked = sorted(totals, key=lambda k: (-totals[k], k[0], _order(k[1])))
    data.calls = sum(totals.values())
    data.hidden_series = max(0, len(ranked) - TOP_SERIES)
    chosen = ranked[:TOP_SERIES]
    period = data.period
    # (interface, version) -> period -> bucket -> [calls, longest]
    groups: dict[tuple[str, int | None], dict[int, dict[int, list[Any]]]] = {k: defaultdict(dict) for k in chosen}
    if isinstance(store, DatabaseStore):
        for name, version in chosen:
            # A range of the primary key (interface, version, ...): only this series' rows are read.
            for slot_of_time, bucket, calls, longest in store._read(
                "SELECT hour / ?, bucket, CAST(sum(calls) AS BIGINT), max(max_duration) FROM taskcatalog_call_stats"
                " WHERE interface = ? AND version = ? AND hour >= ? GROUP BY 1, 2",
                [period // HOUR, name, 0 if version is None else version, int(since // HOUR)],
            ):
                groups[(name, version)][slot_of_time][bucket] = [calls, longest]
    else:
        from .records import bucket_of

        for row in store._rows(interface, None, since):
            series = groups.get((row[3], row[4]))
            if series is None:
                continue
            cell = series[int(row[6] // period)].setdefault(bucket_of(row[7]), [0, 0.0])
            cell[0] += 1
            cell[1] = max(cell[1], row[7])
    found = []
    for (name, version), slots in groups.items():
        points = []
        for slot_of_time in sorted(slots):
            buckets = slots[slot_of_time]
            calls = sum(c[0] for c in buckets.values())
            longest = max(c[1] for c in buckets.values())
            p50, p95 = percentiles([(b, c[0]) for b, c in buckets.items()], longest)
            points.append((float(slot_of_time * period), p50, p95, calls))
        found.append(Series(name, version, points, totals[(name, version)]))
    data.series = sorted(found, key=lambda s: (s.interface, _order(s.version)))


def _errors_part(pairs: list[Pair], data: ReportData) -> None:
    totals: dict[tuple[str, str | None], list[int]] = defaultdict(lambda: [0, 0])
    for name, _, customer, _, _, recent, errors in pairs:
        cell = totals[(name, customer)]
        cell[0] += recent
        cell[1] += errors
    found = [ErrorRate(n, c, calls, errors) for (n, c), (calls, errors) in totals.items() if errors]
    data.errors = sorted(found, key=lambda e: (-e.rate, -e.errors, e.interface, e.customer or ""))[:TOP_ERRORS]


# The oldest batch among the newest holding PLUGIN_WINDOW calls (a running sum, newest first).
_WINDOW_START = """
SELECT coalesce(max(id), 0) FROM (
    SELECT id, sum(calls) OVER (ORDER BY id DESC ROWS UNBOUNDED PRECEDING) AS seen
    FROM taskcatalog_call_batches WHERE latest >= ? ORDER BY id DESC LIMIT ?
) AS newest WHERE seen >= ?
"""


def _plugins_part(store: Any, interface: str | None, since: float, data: ReportData) -> None:
    if isinstance(store, DatabaseStore):
        first = store._read(_WINDOW_START, (since, PLUGIN_WINDOW, PLUGIN_WINDOW))[0][0]
        # (process, call key, plugin key) -> [runs, total ns, longest ns], from the records themselves
        # (packed: SQL cannot take them apart), then named through the keys.
        sums: dict[tuple[int, int, int], list[int]] = {}
        for process, stored in store._read(
            "SELECT process, records FROM taskcatalog_call_batches WHERE id >= ? AND latest >= ?", (first, since)
        ):
            for record in unpack(stored):
                for key, nanoseconds in record[8]:
                    cell = sums.get((process, record[1], key))
                    if cell is None:
                        sums[process, record[1], key] = [1, nanoseconds, nanoseconds]
                    else:
                        cell[0] += 1
                        cell[1] += nanoseconds
                        cell[2] = max(cell[2], nanoseconds)
        processes = {process for process, _, _ in sums}
        calls = {process: store._call_names(process) for process in processes}
        plugins = store._plugin_names(processes)
        merged: dict[tuple[str, Any, str], list[int]] = {}
        for (process, call_key, plugin_key), (count, total, longest) in sums.items():
            name = calls[process][call_key][0]
            if interface is not None and name != interface:
                continue
            slot, plugin = plugins[process, plugin_key]
            both = merged.setdefault((name, slot, plugin), [0, 0, 0])
            both[0] += count
            both[1] += total
            both[2] = max(both[2], longest)
        timings = [PluginTiming(n, s, p, count, total * 1e-9 / count, longest * 1e-9)
                   for (n, s, p), (count, total, longest) in merged.items()]
    else:
        runs: dict[tuple[str, Any, str], list[float]] = defaultdict(list)
        names = store.buffers.span_keys.values
        for row in store._rows(interface, None, since)[-PLUGIN_WINDOW:]:
            for key, nanoseconds in row[11]:
                slot, plugin = names[key]
                runs[(row[3], slot, plugin)].append(nanoseconds * 1e-9)
        timings = [PluginTiming(n, s, p, len(d), math.fsum(d) / len(d), max(d)) for (n, s, p), d in runs.items()]
    data.plugins = sorted(timings, key=lambda t: (-t.mean, t.interface, t.plugin))[:TOP_PLUGINS]


def _batches_part(catalog: Catalog, interface: str | None, data: ReportData) -> None:
    if catalog.database is None:
        return
    batches = catalog.batches
    where, params = ("", []) if interface is None else (" WHERE interface = ?", [interface])
    db = catalog.database
    newest = db._execute(
        db._qmark(f"SELECT id FROM taskcatalog_batches{where} ORDER BY id DESC LIMIT ?"), [*params, TOP_BATCHES]
    )
    for (batch_id,) in newest:
        batch = batches.get(batch_id)
        header = batch.to_dict()
        counts = {status: count for status, count in header["rows"].items() if count}
        rate = None
        if header["executed_at"] and header["started_at"]:
            took = (dt.datetime.fromisoformat(header["executed_at"]) - dt.datetime.fromisoformat(header["started_at"]))
            done = sum(counts.values())
            rate = done / took.total_seconds() if took.total_seconds() > 0 else None
        failures = [(r.number, f"{r.error_type}: {r.error}") for r in batch.rows("error", 0, 5)]
        data.batches.append(BatchInfo(batch.id, batch.interface, batch.version, batch.customer, header["status"],
                                      batch.description, counts, batch.created_at, rate, failures))


def gather(
    catalog: Catalog, since: dt.datetime | str | None = None, interface: str | None = None, top_interfaces: int = 60
) -> ReportData:
    """Everything the report shows, from ``catalog`` (its files, its telemetry, its batches)."""
    now = time.time()
    start = since_seconds(since)
    if start is None:
        start = now - 14 * DAY
    database = None if catalog.database is None else catalog.database.label
    data = ReportData(utc(now), utc(start), interface, database, period=_period(start, now))
    _catalog_part(catalog, interface, data)
    try:
        store = catalog._recorded_store()
    except CatalogError:
        store = None  # telemetry is off: no calls to show (batches may still be in the database)
    if store is not None:
        data.recorded = True
        pairs = _pairs(store, interface, start)
        _usage_part(pairs, data, top_interfaces)
        _timeline_part(store, pairs, interface, start, data)
        _errors_part(pairs, data)
        _plugins_part(store, interface, start, data)
    _batches_part(catalog, interface, data)
    return data

