"""The numbers behind the HTML report, as plain data (``report_page.py`` draws them).

Everything is aggregated where it lives: in SQL from the telemetry aggregates
(``taskcatalog_call_stats``) and the newest raw batches when there is a
database, from the memory buffers otherwise. Lists are cut to what a page can
show (the ``TOP_*`` limits) and say how much was left out, so a catalog with a
million recorded calls renders as fast and as small as one with ten.
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
from .stores import DatabaseStore, MemoryStore

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


def _usage_rows(store: Any, interface: str | None) -> list[tuple[str, int | None, str | None, int, float]]:
    """(interface, version, customer, calls, last call) for every pair ever called."""
    if isinstance(store, DatabaseStore):
        where, params = ("", []) if interface is None else (" WHERE interface = ?", [interface])
        rows = store.db._execute(
            "SELECT interface, version, customer, sum(calls), max(last_call) FROM taskcatalog_call_stats"
            f"{where} GROUP BY 1, 2, 3", params,
        )
        return [(n, None if v == 0 else v, None if c == "" else c, calls, last) for n, v, c, calls, last in rows]
    return [(n, v, c, calls, last) for n, v, c, calls, _, last in store.usage(interface, None)]


def _usage_part(store: Any, interface: str | None, data: ReportData, top_interfaces: int) -> None:
    by_interface: dict[str, list[tuple[int | None, str | None, int, float]]] = defaultdict(list)
    for name, version, customer, calls, last in _usage_rows(store, interface):
        by_interface[name].append((version, customer, calls, last))
    ranked = sorted(by_interface, key=lambda n: (-sum(r[2] for r in by_interface[n]), n))
    data.hidden_interfaces = max(0, len(ranked) - top_interfaces)
    for name in sorted(ranked[:top_interfaces]):
        rows = by_interface[name]
        per_customer: dict[str | None, int] = defaultdict(int)
        for _, customer, calls, _ in rows:
            per_customer[customer] += calls
        customers = sorted(per_customer, key=lambda c: (-per_customer[c], c or ""))
        shown = sorted(customers[:TOP_CUSTOMERS], key=lambda c: (c is None, c or ""))
        versions = sorted({v for v, _, _, _ in rows}, key=lambda v: -1 if v is None else v)
        cells = {(c, v): (calls, last) for v, c, calls, last in rows if c in shown}
        data.usage.append(UsageGrid(name, versions, shown, cells, max(0, len(customers) - TOP_CUSTOMERS)))


def _period(since: float, now: float) -> int:
    """Hours for up to three days, else days: a readable number of points."""
    return HOUR if now - since <= 3 * DAY else DAY


def _timeline_part(store: Any, interface: str | None, since: float, data: ReportData) -> None:
    period = data.period
    groups: dict[tuple[str, int | None], dict[int, dict[int, list[Any]]]] = defaultdict(lambda: defaultdict(dict))
    if isinstance(store, DatabaseStore):
        clauses: list[str] = ["hour >= ?"]
        params: list[Any] = [int(since // HOUR)]
        if interface is not None:
            clauses.append("interface = ?")
            params.append(interface)
        for name, version, slot_of_time, bucket, calls, errors, longest in store.db._execute(
            "SELECT interface, version, hour / ?, bucket, sum(calls), sum(errors), max(max_duration)"
            f" FROM taskcatalog_call_stats WHERE {' AND '.join(clauses)} GROUP BY 1, 2, 3, 4",
            [period // HOUR, *params],
        ):
            groups[(name, None if version == 0 else version)][slot_of_time][bucket] = [calls, errors, longest]
    else:
        from .records import bucket_of

        for row in store._rows(interface, None, since):
            cell = groups[(row[3], row[4])][int(row[6] // period)].setdefault(bucket_of(row[7]), [0, 0, 0.0])
            cell[0] += 1
            cell[1] += row[8] == "error"
            cell[2] = max(cell[2], row[7])
    series = []
    for (name, version), slots in groups.items():
        points = []
        total = 0
        for slot_of_time in sorted(slots):
            buckets = slots[slot_of_time]
            calls = sum(c[0] for c in buckets.values())
            longest = max(c[2] for c in buckets.values())
            p50, p95 = percentiles([(b, c[0]) for b, c in buckets.items()], longest)
            points.append((float(slot_of_time * period), p50, p95, calls))
            total += calls
        series.append(Series(name, version, points, total))
    series.sort(key=lambda s: (-s.calls, s.interface, -1 if s.version is None else s.version))
    data.calls = sum(s.calls for s in series)
    data.hidden_series = max(0, len(series) - TOP_SERIES)
    data.series = sorted(series[:TOP_SERIES], key=lambda s: (s.interface, -1 if s.version is None else s.version))


def _errors_part(store: Any, interface: str | None, since: float, data: ReportData) -> None:
    if isinstance(store, DatabaseStore):
        clauses: list[str] = ["hour >= ?"]
        params: list[Any] = [int(since // HOUR)]
        if interface is not None:
            clauses.append("interface = ?")
            params.append(interface)
        rows = store.db._execute(
            "SELECT interface, customer, sum(calls), sum(errors) FROM taskcatalog_call_stats"
            f" WHERE {' AND '.join(clauses)} GROUP BY 1, 2 HAVING sum(errors) > 0"
            " ORDER BY CAST(sum(errors) AS REAL) / sum(calls) DESC, sum(errors) DESC LIMIT ?",
            [*params, TOP_ERRORS],
        )
        data.errors = [ErrorRate(n, None if c == "" else c, calls, errors) for n, c, calls, errors in rows]
        return
    totals: dict[tuple[str, str | None], list[int]] = defaultdict(lambda: [0, 0])
    for stats in store.stats(interface, None, since):
        cell = totals[(stats.interface, stats.customer)]
        cell[0] += stats.calls
        cell[1] += stats.errors
    found = [ErrorRate(n, c, calls, errors) for (n, c), (calls, errors) in totals.items() if errors]
    data.errors = sorted(found, key=lambda e: (-e.rate, -e.errors))[:TOP_ERRORS]


def _plugins_part(store: Any, interface: str | None, since: float, data: ReportData) -> None:
    runs: dict[tuple[str, Any, str], list[float]] = defaultdict(list)
    if isinstance(store, DatabaseStore):
        db = store.db
        newest = db._execute(
            "SELECT id, calls FROM taskcatalog_call_batches WHERE latest >= ? ORDER BY id DESC", (since,)
        )
        chosen, count = [], 0
        for batch_id, calls in newest:
            if count >= PLUGIN_WINDOW:
                break
            chosen.append(batch_id)
            count += calls
        if chosen:
            marks = ", ".join("?" * len(chosen))
            for name, slot, plugin, duration in db._execute(
                "SELECT k.interface, pk.slot, pk.plugin, json_extract(s.value, '$[2]') * 1e-9"
                " FROM taskcatalog_call_batches AS b, json_each(b.records) AS j,"
                " json_each(json_extract(j.value, '$[8]')) AS s"
                " JOIN taskcatalog_call_keys AS k ON k.process = b.process AND k.key = json_extract(j.value, '$[1]')"
                " JOIN taskcatalog_plugin_keys AS pk ON pk.process = b.process AND pk.key = json_extract(s.value, '$[0]')"
                f" WHERE b.id IN ({marks})", chosen,
            ):
                if interface is None or name == interface:
                    runs[(name, slot, plugin)].append(duration)
    else:
        names = store.buffers.span_keys.values
        for row in store._rows(interface, None, since)[-PLUGIN_WINDOW:]:
            for key, _, nanoseconds in row[11]:
                slot, plugin = names[key]
                runs[(row[3], slot, plugin)].append(nanoseconds * 1e-9)
    timings = [PluginTiming(n, s, p, len(d), math.fsum(d) / len(d), max(d)) for (n, s, p), d in runs.items()]
    data.plugins = sorted(timings, key=lambda t: (-t.mean, t.interface, t.plugin))[:TOP_PLUGINS]


def _batches_part(catalog: Catalog, interface: str | None, data: ReportData) -> None:
    if catalog.database is None:
        return
    for batch in catalog.batches.list()[: TOP_BATCHES * 4]:
        if interface is not None and batch.interface != interface:
            continue
        header = batch.to_dict()
        counts = header["rows"]
        rate = None
        if header["executed_at"] and header["started_at"]:
            took = (dt.datetime.fromisoformat(header["executed_at"]) - dt.datetime.fromisoformat(header["started_at"]))
            done = sum(counts.values())
            rate = done / took.total_seconds() if took.total_seconds() > 0 else None
        failures = [(r.number, f"{r.error_type}: {r.error}") for r in batch.rows("error", 0, 5)]
        data.batches.append(BatchInfo(batch.id, batch.interface, batch.version, batch.customer, header["status"],
                                      batch.description, counts, batch.created_at, rate, failures))
        if len(data.batches) >= TOP_BATCHES:
            break


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
        return data  # telemetry is off: the catalog part is all there is
    data.recorded = True
    _usage_part(store, interface, data, top_interfaces)
    _timeline_part(store, interface, start, data)
    _errors_part(store, interface, start, data)
    _plugins_part(store, interface, start, data)
    _batches_part(catalog, interface, data)
    return data

