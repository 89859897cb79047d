"""The HTML report: one self-contained page, charts as inline SVG, no script, no outside asset.

Every chart is an ``<svg role="img">`` with a ``<title>`` and a ``<desc>``,
its data marks carry ``class="mark"``, and the same numbers follow it as a
table. Colours come from the Okabe-Ito palette (told apart with any common
colour-vision deficiency); the page follows the reader's light or dark
preference and prints cleanly. Every text is escaped: names come from files
and databases, not from us.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

from .records import utc
from .report_data import DAY, ReportData, Series

__all__ = ["render"]

# Okabe-Ito: blue, orange, bluish green, vermillion, reddish purple, sky blue, grey.
BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY, GREY = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#999999"
OUTCOME_COLOURS = {"ok": GREEN, "error": VERMILLION, "skipped": GREY, "pending": SKY}

_CSS = """
:root { --fg: #1b1b1b; --bg: #ffffff; --muted: #5f5f5f; --line: #d0d0d0; --panel: #f5f5f5; --grid: #e6e6e6; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e8e8e8; --bg: #15171a; --muted: #a8a8a8; --line: #3a3d42; --panel: #1f2226; --grid: #2c2f34; }
}
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1200px; padding: 1.5rem; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--fg); background: var(--bg); }
h1 { font-size: 1.6rem; margin: 0 0 .2rem; } h2 { font-size: 1.25rem; margin: 2.2rem 0 .6rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.02rem; margin: 1.4rem 0 .4rem; }
.meta, .note, figcaption { color: var(--muted); font-size: .9rem; }
nav a { margin-right: 1rem; color: inherit; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .88rem; }
th, td { border-bottom: 1px solid var(--line); padding: .2rem .6rem; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
#catalog td:nth-child(-n+2), #catalog td:last-child { white-space: nowrap; }
details { margin: .2rem 0 1rem; } summary { cursor: pointer; color: var(--muted); font-size: .9rem; }
.empty { padding: .8rem 1rem; background: var(--panel); border-radius: 6px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: .8rem 1.2rem; }
svg { display: block; max-width: 100%; height: auto; font: 11px system-ui, sans-serif; }
svg text { fill: var(--fg); } svg .axis { stroke: var(--muted); } svg .gridline { stroke: var(--grid); }
svg .muted { fill: var(--muted); }
svg .r0, .legend .r0 { fill: #0072B2; background: #0072B2; } svg .r1, .legend .r1 { fill: rgba(0, 114, 178, .7); background: rgba(0, 114, 178, .7); }
svg .r2, .legend .r2 { fill: rgba(0, 114, 178, .45); background: rgba(0, 114, 178, .45); }
svg .r3, .legend .r3 { fill: rgba(0, 114, 178, .18); background: rgba(0, 114, 178, .18); }
svg text.on-r0, svg text.on-r1, svg text.on-r2 { fill: #ffffff; }
@media (prefers-color-scheme: dark) { svg .r3, .legend .r3 { fill: rgba(86, 180, 233, .3); background: rgba(86, 180, 233, .3); } }
.legend span { display: inline-block; margin-right: 1rem; font-size: .85rem; }
.legend i { display: inline-block; width: .8rem; height: .8rem; margin-right: .3rem; vertical-align: -1px; border-radius: 2px; }
.problem { font-family: ui-monospace, monospace; font-size: .85rem; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; } nav { display: none; }
  details { display: block; } details > summary { display: none; }
  * { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
  section, figure { break-inside: avoid; }
}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _unit(longest: float) -> tuple[str, float]:
    """The unit that shows durations up to ``longest`` seconds with readable ticks: (name, per second)."""
    if longest < 1e-3:
        return "µs", 1e6
    if longest < 10.0:
        return "ms", 1e3
    return "s", 1.0


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def _clip(text: str, limit: int = 46) -> str:
    """A chart label short enough for its margin; the whole text is in the tooltip and the table."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(moment: float | dt.datetime | None) -> str:
    if moment is None:
        return "-"
    value = moment if isinstance(moment, dt.datetime) else utc(moment)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _ago(seconds: float) -> str:
    if seconds < 3600:
        return f"{max(0, int(seconds // 60))} min ago"
    if seconds < DAY:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // DAY)} days ago"


def _nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values covering [low, high]: steps of 1, 2 or 5 times a power of ten."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    value = math.floor(low / step) * step
    ticks = [round(value, 12)]
    while ticks[-1] < high - step * 1e-9:  # the last tick is at or above ``high``: every mark fits
        value += step
        ticks.append(round(value, 12))
    return ticks


def _date_ticks(start: dt.date, end: dt.date) -> list[tuple[dt.date, str]]:
    """Calendar ticks within [start, end]: first days of years, of months, or weeks, at most about seven."""
    days = (end - start).days
    if days > 3 * 365:
        step = next(s for s in (1, 2, 5, 10, 20, 50) if days / 365 / s <= 7)
        first = (start.year // step + 1) * step
        return [(dt.date(y, 1, 1), str(y)) for y in range(first, end.year + 1, step)]
    if days > 90:
        step = next(s for s in (1, 2, 3, 6, 12) if days / 30.4 / s <= 7)
        found = []
        month = start.year * 12 + start.month  # the month after start's: months count from 0
        while True:
            if month % step == 0:
                day = dt.date(month // 12, month % 12 + 1, 1)
                if day > end:
                    break
                found.append((day, day.strftime("%Y-%m")))
            month += 1
        return found
    step = 7 if days > 14 else 1
    return [(start + dt.timedelta(days=d), (start + dt.timedelta(days=d)).isoformat()) for d in range(0, days + 1, step)]


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] | None = None,
           caption: str | None = None) -> str:
    numeric = numeric or [False] * len(headers)
    head = "".join(f'<th{" class=n" if n else ""}>{_e(h)}</th>' for h, n in zip(headers, numeric))
    body = "".join(
        "<tr>" + "".join(f'<td{" class=n" if n else ""}>{_e(v)}</td>' for v, n in zip(row, numeric)) + "</tr>"
        for row in rows
    )
    cap = f"<caption class=note>{_e(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _numbers(table: str, what: str = "the numbers") -> str:
    """A chart's table, folded under it (open when printed)."""
    return f"<details><summary>{_e(what)} as a table</summary>{table}</details>"


def _svg(chart_id: str, width: int, height: int, title: str, desc: str, body: str) -> str:
    return (
        f'<svg id="{_e(chart_id)}" class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-labelledby="{_e(chart_id)}-t {_e(chart_id)}-d" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{_e(chart_id)}-t">{_e(title)}</title><desc id="{_e(chart_id)}-d">{_e(desc)}</desc>{body}</svg>'
    )


def _empty(text: str) -> str:
    return f'<p class="empty">{_e(text)}</p>'


# -- the catalog ------------------------------------------------------------------------


def _catalog(data: ReportData) -> str:
    parts = [f"<p class=meta>{len(data.interfaces)} interface(s); {len(data.problems)} problem(s) found by check().</p>"]
    rows = []
    for info in data.interfaces:
        origin = info.distribution or "this project"
        if info.error:
            rows.append([info.name, "-", f"does not load: {info.error}", "-", origin])
            continue
        for version in info.versions:
            state = "retired" if version.retired else ("deprecated" if version.deprecated else "current")
            sunset = f", sunset {version.sunset.isoformat()}" if version.sunset else ""
            slots = "; ".join(f"{slot}: {', '.join(customers) or 'no customer'}" for slot, customers in version.slots)
            advice = f" ({version.deprecated})" if version.deprecated else ""
            rows.append([info.name, f"v{version.version}", f"{state}{sunset}{advice}", slots or "no slots", origin])
    parts.append(_table(["interface", "version", "state", "slots: customers", "from"], rows))
    parts.append("<h3>Sunsets</h3>")
    parts.append(_sunsets(data))
    parts.append("<h3>Problems</h3>")
    if data.problems:
        parts.append("<ul>" + "".join(
            f'<li class="problem">{_e(p.path)}{":" + str(p.line) if p.line else ""}: {_e(p.kind)}: {_e(p.message)}</li>'
            for p in data.problems) + "</ul>")
    else:
        parts.append(_empty("no problems: every file loads and every plugin fits its slot"))
    return "".join(parts)


def _sunsets(data: ReportData) -> str:
    marks = [(info.name, v, v.sunset) for info in data.interfaces for v in info.versions if v.sunset is not None]
    if not marks:
        return _empty("no version has a sunset date: deprecate one with @deprecated(..., sunset='YYYY-MM-DD')")
    today = data.generated_at.date()
    start = min([today, *(m[2] for m in marks)])
    end = max([today, *(m[2] for m in marks)])
    span = max((end - start).days * 21 // 20, 30)  # a little room after the last sunset
    width, left, right, row_h = 900, 170, 30, 22
    height = 40 + row_h * len(marks) + 30
    scale = (width - left - right) / span

    def x(day: dt.date) -> float:
        return left + (day - start).days * scale

    body = [f'<line class="axis" x1="{left}" x2="{width - right}" y1="{height - 30}" y2="{height - 30}"/>']
    end = start + dt.timedelta(days=span)
    for day, label in _date_ticks(start, end):
        body.append(f'<line class="gridline" x1="{x(day):.1f}" x2="{x(day):.1f}" y1="30" y2="{height - 30}"/>'
                    f'<text x="{x(day):.1f}" y="{height - 12}" text-anchor="middle" class="muted">{label}</text>')
    body.append(f'<line class="gridline" x1="{x(today):.1f}" x2="{x(today):.1f}" y1="20" y2="{height - 30}"/>'
                f'<text x="{x(today):.1f}" y="14" text-anchor="middle">today</text>')
    rows = []
    for index, (name, version, sunset) in enumerate(sorted(marks, key=lambda m: (m[2], m[0]))):
        y = 40 + index * row_h
        colour = VERMILLION if version.retired else ORANGE
        label = f"{name} v{version.version}"
        body.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{_e(label)}</text>')
        body.append(f'<circle class="mark" cx="{x(sunset):.1f}" cy="{y}" r="5" fill="{colour}">'
                    f'<title>{_e(label)}: sunset {sunset}{" (retired)" if version.retired else ""}</title></circle>')
        rows.append([name, f"v{version.version}", sunset.isoformat(), "retired" if version.retired else "deprecated",
                     version.deprecated or ""])
    legend = (f'<p class="legend"><span><i style="background:{ORANGE}"></i>deprecated, retires on its sunset</span>'
              f'<span><i style="background:{VERMILLION}"></i>retired</span></p>')
    svg = _svg("sunsets", width, height, "Sunset timeline",
               f"When each deprecated version retires: {len(marks)} version(s) between {start} and {end}.", "".join(body))
    return legend + svg + _numbers(_table(["interface", "version", "sunset", "state", "advice"], rows))


# -- usage ------------------------------------------------------------------------------------


# Recency classes of the usage grid: (newest age in seconds, class, legend).
_RECENCY = ((DAY, "r0", "within a day"), (7 * DAY, "r1", "within a week"), (30 * DAY, "r2", "within 30 days"),
            (math.inf, "r3", "longer ago"))


def _recency(age: float) -> str:
    """The class of a pair last called ``age`` seconds ago: darker is more recent."""
    return next(name for limit, name, _ in _RECENCY if age <= limit)


def _version(version: object) -> str:
    return "(unresolved)" if version is None else f"v{version}"


def _duration(seconds: float) -> str:
    """A duration with its unit, three significant digits: 385 ns, 12.3 ms, 1.5 s."""
    if seconds < 1e-6:
        return f"{seconds * 1e9:.3g} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:,.3g} s" if seconds < 1000 else f"{seconds:,.0f} s"


def _usage(data: ReportData) -> str:
    if not data.recorded:
        return _empty("telemetry is off for this catalog (telemetry = false in taskcatalog.toml, or "
                      "Catalog(..., telemetry=False)): no calls are recorded")
    if not data.usage:
        if data.database is None:
            return _empty("no calls recorded yet: without a database only this process's calls are kept, in memory; "
                          "give the catalog a database ([catalog] database in taskcatalog.toml, or "
                          "Catalog(..., database=...)) to record the calls of every process")
        return _empty(f"no calls recorded yet in {data.database}: every call made through a catalog with this "
                      "database is recorded there; make some calls, then make the report again")
    now = data.generated_at.timestamp()
    parts = ['<p class="legend">last called: ' + "".join(
        f'<span><i class="{name}"></i>{label}</span>' for _, name, label in _RECENCY)
        + '<span>(the number in a cell counts the calls; no cell: never called)</span></p>']
    if data.hidden_interfaces:
        parts.append(f"<p class=note>{data.hidden_interfaces} less used interface(s) not shown; "
                     "use --interface NAME for one of them.</p>")
    for index, grid in enumerate(data.usage):
        cell_w, cell_h, left, top = 74, 20, 170, 30
        width = left + cell_w * len(grid.versions) + 10
        height = top + cell_h * len(grid.customers) + 8
        body = []
        for column, version in enumerate(grid.versions):
            body.append(f'<text x="{left + column * cell_w + cell_w // 2}" y="{top - 10}" text-anchor="middle">'
                        f'{_e(_version(version))}</text>')
        rows = []
        for row, customer in enumerate(grid.customers):
            y = top + row * cell_h
            name = customer if customer is not None else "(no customer)"
            body.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{_e(_clip(name, 26))}</text>')
            for column, version in enumerate(grid.versions):
                cell = grid.cells.get((customer, version))
                if cell is None:
                    continue
                calls, last = cell
                shade = _recency(now - last)
                x = left + column * cell_w
                body.append(
                    f'<rect class="mark {shade}" x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" rx="2">'
                    f'<title>{_e(name)}, {_e(grid.interface)} {_e(_version(version))}: {_plural(calls, "call")}, '
                    f'last {_when(last)}</title></rect>'
                    f'<text x="{x + cell_w // 2}" y="{y + 14}" text-anchor="middle" class="on-{shade}">{calls:,}</text>'
                )
                rows.append([name, _version(version), calls, _when(last), _ago(now - last)])
        chart_id = f"usage-{index}"
        desc = (f"{grid.interface}: calls per customer and version, {len(grid.customers)} customer(s) x "
                f"{len(grid.versions)} version(s), shaded by how recently each pair was called.")
        more = f" ({grid.hidden_customers} more customer(s) not shown)" if grid.hidden_customers else ""
        parts.append(f"<figure><h3>{_e(grid.interface)}</h3>"
                     + _svg(chart_id, width, height, f"Usage of {grid.interface}", desc, "".join(body))
                     + f"<figcaption>customers x versions, {_plural(sum(c for c, _ in grid.cells.values()), 'call')}"
                     f"{_e(more)}</figcaption>"
                     + _numbers(_table(["customer", "version", "calls", "last call", ""], rows, [False, False, True, False, False]))
                     + "</figure>")
    return "".join(parts)


# -- latency and errors --------------------------------------------------------------------------


def _small_multiple(index: int, series: Series, start: float, end: float) -> str:
    width, height, left, right, top, bottom = 360, 170, 46, 10, 24, 30
    values = [v for _, p50, p95, _ in series.points for v in (p50, p95)]
    unit, factor = _unit(max(values, default=0.0) * 1.05)
    ticks = _nice_ticks(0.0, max(values) * factor * 1.05 if values and max(values) > 0 else 1.0)
    top_value = ticks[-1]
    span = max(end - start, 1.0)
    name = f"{series.interface} {_version(series.version)}"

    def x(t: float) -> float:
        return left + (t - start) / span * (width - left - right)

    def y(seconds: float) -> float:
        return top + (1 - seconds * factor / top_value) * (height - top - bottom)

    body = [f'<text x="{left}" y="14">{_e(_clip(name, 38))} <tspan class="muted">({_plural(series.calls, "call")})'
            '</tspan></text>']
    for tick in ticks:
        at = top + (1 - tick / top_value) * (height - top - bottom)
        body.append(f'<line class="gridline" x1="{left}" x2="{width - right}" y1="{at:.1f}" y2="{at:.1f}"/>'
                    f'<text x="{left - 4}" y="{at + 4:.1f}" text-anchor="end" class="muted">{tick:g}</text>')
    middle = (top + height - bottom) / 2
    body.append(f'<text x="10" y="{middle}" transform="rotate(-90 10 {middle})" text-anchor="middle" class="muted">'
                f'{unit}</text>')
    for fraction, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        moment = start + fraction * span
        body.append(f'<text x="{x(moment):.1f}" y="{height - 10}" text-anchor="{anchor}" class="muted">'
                    f'{utc(moment).strftime("%m-%d %H:%M" if span <= 3 * DAY else "%Y-%m-%d")}</text>')
    body.append(f'<line class="axis" x1="{left}" x2="{width - right}" y1="{height - bottom}" y2="{height - bottom}"/>')
    for position, colour, quantile in ((1, BLUE, "p50"), (2, ORANGE, "p95")):
        if len(series.points) == 1:  # one period: a dot says more than a line of no length
            t, value = series.points[0][0], series.points[0][position]
            body.append(f'<circle class="mark" cx="{x(t):.1f}" cy="{y(value):.1f}" r="3" fill="{colour}">'
                        f'<title>{quantile} {_duration(value)}</title></circle>')
        else:
            points = " ".join(f"{x(p[0]):.1f},{y(p[position]):.1f}" for p in series.points)
            body.append(f'<polyline class="mark" points="{points}" fill="none" stroke="{colour}" stroke-width="2">'
                        f'<title>{quantile}</title></polyline>')
    desc = (f"p50 and p95 latency in {unit} of {name} per period, "
            f"{len(series.points)} period(s), {_plural(series.calls, 'call')}.")
    return _svg(f"latency-{index}", width, height, f"Latency of {name}", desc, "".join(body))


def _no_calls(data: ReportData) -> str:
    """Why a chart of calls since ``since`` is empty, and what to do."""
    if not data.recorded:
        return "telemetry is off for this catalog: no calls are recorded"
    if data.usage:
        return f"no calls since {_when(data.since)}: use --since to look further back"
    return "no calls recorded yet (see Usage above)"


def _latency(data: ReportData) -> str:
    if not data.series:
        return _empty(_no_calls(data))
    start, end = data.since.timestamp(), data.generated_at.timestamp()
    unit = "hour" if data.period < DAY else "day"
    parts = [f'<p class="legend"><span><i style="background:{BLUE}"></i>p50</span>'
             f'<span><i style="background:{ORANGE}"></i>p95</span>'
             f"<span>per {unit}; every chart spans the same time, {_when(start)} to {_when(end)}, "
             "on a latency scale of its own (unit on its axis)</span></p>"]
    if data.hidden_series:
        parts.append(f"<p class=note>the {len(data.series)} most called interface versions are shown; "
                     f"{data.hidden_series} more were called in this period (use --interface NAME).</p>")
    parts.append('<div class="grid">' + "".join(_small_multiple(i, s, start, end) for i, s in enumerate(data.series)) + "</div>")
    rows = [[s.interface, _version(s.version), _when(t), calls, _duration(p50), _duration(p95)]
            for s in data.series for t, p50, p95, calls in s.points]
    parts.append(_numbers(_table(["interface", "version", f"{unit} from", "calls", "p50", "p95"], rows,
                                 [False, False, False, True, True, True])))
    return "".join(parts)


def _bars(chart_id: str, title: str, desc: str, labels: list[str], values: list[float], unit: str,
          colour: str, notes: list[str], limit: float | None = None) -> str:
    """Horizontal bars, one per label, on a scale from 0 (up to ``limit`` at most) in ``unit``."""
    width, left, right, row_h, top = 900, 300, 190, 20, 10
    height = top + row_h * len(labels) + 44
    high = max(values, default=0.0) * 1.05
    if limit is not None:
        high = min(high, limit)
    ticks = _nice_ticks(0.0, high if high > 0 else 1.0)
    top_value = ticks[-1]

    def x(value: float) -> float:
        return left + value / top_value * (width - left - right)

    body = []
    for tick in ticks:
        body.append(f'<line class="gridline" x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top}" y2="{height - 44}"/>'
                    f'<text x="{x(tick):.1f}" y="{height - 28}" text-anchor="middle" class="muted">{tick:g}</text>')
    body.append(f'<text x="{(left + width - right) / 2:.1f}" y="{height - 8}" text-anchor="middle" class="muted">{_e(unit)}</text>')
    for index, (label, value, note) in enumerate(zip(labels, values, notes)):
        y = top + index * row_h
        body.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{_e(_clip(label))}</text>'
                    f'<rect class="mark" x="{left}" y="{y + 3}" width="{max(x(value) - left, 1):.1f}" height="{row_h - 6}" '
                    f'fill="{colour}"><title>{_e(label)}: {_e(note)}</title></rect>'
                    f'<text x="{x(value) + 4:.1f}" y="{y + 14}" class="muted">{_e(note)}</text>')
    return _svg(chart_id, width, height, title, desc, "".join(body))


def _errors(data: ReportData) -> str:
    if not data.errors:
        return _empty(f"no failed calls since {_when(data.since)}" if data.series else _no_calls(data))
    labels = [f"{e.interface} / {e.customer or '(no customer)'}" for e in data.errors]
    values = [e.rate * 100 for e in data.errors]
    chart = _bars("errors", "Error rate per interface and customer",
                  f"Share of calls that failed since {_when(data.since)}, for the {len(labels)} interface and "
                  "customer pairs with the highest rate.", labels, values, "% of calls failed", VERMILLION,
                  [f"{e.rate:.1%} ({e.errors:,} of {e.calls:,})" for e in data.errors], limit=100.0)
    rows = [[e.interface, e.customer or "-", e.calls, e.errors, f"{e.rate:.2%}"] for e in data.errors]
    return chart + _numbers(_table(["interface", "customer", "calls", "errors", "rate"], rows, [False, False, True, True, True]))


def _plugins(data: ReportData) -> str:
    if not data.plugins:
        if data.series:
            return _empty(f"no plugin ran in the calls recorded since {_when(data.since)}")
        return _empty(_no_calls(data))
    labels = [f"{p.plugin} ({p.interface}, slot {p.slot!r})" for p in data.plugins]
    unit, factor = _unit(max(p.mean for p in data.plugins) * 1.05)
    values = [p.mean * factor for p in data.plugins]
    chart = _bars("plugins", "Slowest plugins", f"Mean run time in {unit} of the {len(labels)} slowest plugins "
                  "among the newest recorded calls.", labels, values, f"{unit}, mean run time", PURPLE,
                  [f"{_duration(p.mean)} mean, {_duration(p.longest)} max, {_plural(p.runs, 'run')}" for p in data.plugins])
    rows = [[p.interface, repr(p.slot), p.plugin, p.runs, _duration(p.mean), _duration(p.longest)] for p in data.plugins]
    return chart + _numbers(_table(["interface", "slot", "plugin", "runs", "mean", "max"], rows,
                                   [False, False, False, True, True, True]))


# -- batches ----------------------------------------------------------------------------------


def _batches(data: ReportData) -> str:
    if data.database is None:
        return _empty("batches live in the catalog database: this catalog has none "
                      "([catalog] database in taskcatalog.toml, or Catalog(..., database=...))")
    if not data.batches:
        which = f" of {data.interface}" if data.interface else ""
        return _empty(f"no batches{which} yet: 'taskcatalog batch create ...' (or catalog.batches.create) prepares one")
    width, left, right, row_h, top = 900, 300, 20, 22, 10
    height = top + row_h * len(data.batches) + 10
    body = []
    for index, batch in enumerate(data.batches):
        y = top + index * row_h
        total = max(sum(batch.counts.values()), 1)
        label = f"#{batch.id} {batch.interface} v{batch.version} {batch.customer or ''} ({batch.status})"
        body.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{_e(_clip(label))}</text>')
        x = float(left)
        known = [o for o in OUTCOME_COLOURS if batch.counts.get(o)]
        for outcome in known + sorted(o for o in batch.counts if o not in OUTCOME_COLOURS and batch.counts[o]):
            count = batch.counts[outcome]
            w = count / total * (width - left - right)
            body.append(f'<rect class="mark" x="{x:.1f}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row_h - 6}" '
                        f'fill="{OUTCOME_COLOURS.get(outcome, PURPLE)}"><title>{_e(label)}: {count:,} {_e(outcome)}'
                        '</title></rect>')
            x += w
    legend = '<p class="legend">' + "".join(
        f'<span><i style="background:{c}"></i>{o}</span>' for o, c in OUTCOME_COLOURS.items()) + "</p>"
    chart = _svg("batches", width, height, "Recent batches",
                 f"Rows of the {len(data.batches)} newest batches by outcome.", "".join(body))
    rows = [[b.id, b.interface, b.version, b.customer or "-", b.status, sum(b.counts.values()), b.counts.get("ok", 0),
             b.counts.get("error", 0), b.counts.get("skipped", 0), b.counts.get("pending", 0),
             "-" if b.rate is None else f"{b.rate:,.0f}/s", _when(b.created_at), b.description] for b in data.batches]
    table = _table(["id", "interface", "version", "customer", "status", "rows", "ok", "error", "skipped", "pending",
                    "rate", "created", "description"], rows, [True, False, True, False, False, True, True, True, True, True,
                                                              True, False, False])
    failures = "".join(
        f"<h3>Failed rows of batch {b.id}</h3><ul>"
        + "".join(f'<li class="problem">row {n}: {_e(message)}</li>' for n, message in b.failures) + "</ul>"
        for b in data.batches if b.failures
    )
    return legend + chart + _numbers(table) + failures


def render(data: ReportData) -> str:
    """The whole page for ``data``."""
    scope = f" &middot; interface {_e(data.interface)}" if data.interface else ""
    database = _e(data.database) if data.database else "none (telemetry kept in memory)"
    sections = [
        ("catalog", "Catalog", _catalog(data)),
        ("usage", "Usage: who calls which version", _usage(data)),
        ("latency", "Latency", _latency(data)),
        ("errors", "Errors", _errors(data)),
        ("plugins", "Slowest plugins", _plugins(data)),
        ("batches", "Batches", _batches(data)),
    ]
    nav = "".join(f'<a href="#{key}">{_e(title.split(":")[0])}</a>' for key, title, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{_e(title)}</h2>{content}</section>' for key, title, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta name=\"color-scheme\" content=\"light dark\">"
        f"<title>taskcatalog report</title><style>{_CSS}</style></head><body>"
        f"<header><h1>taskcatalog report</h1><p class=meta>generated {_when(data.generated_at)} &middot; "
        f"calls since {_when(data.since)}{scope} &middot; database: {database} &middot; "
        f"{data.calls:,} call(s) in this period</p><nav>{nav}</nav></header>{body}</body></html>\n"
    )
