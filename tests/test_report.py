"""The HTML report: the numbers behind each chart, the page, the command, and a real browser.

The numbers come from catalog databases filled by real calls (a small shop
generated in a temporary folder), read back by a new catalog on the file.
The browser tests open the page in headless Chromium (found on PATH, or
named by ``$TASKCATALOG_BROWSER``) and are skipped, with the reason, only
when there is none; CI installs Debian's ``chromium``.

``docs/report.png``, the screenshot the README shows, is made by this
module's browser code from the example catalog::

    python tests/test_report.py          # writes docs/report.png
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # conftest, when run as a script

from conftest import EXAMPLES, ROOT, Layout  # noqa: E402
from taskcatalog import Catalog, Context  # noqa: E402
from taskcatalog import report_data  # noqa: E402
from taskcatalog.databases import open_catalog_database  # noqa: E402
from taskcatalog.report_data import ReportData, gather  # noqa: E402
from taskcatalog.report_page import render  # noqa: E402
from taskcatalog.stores import DatabaseStore  # noqa: E402
from taskcatalog.telemetry import Batch  # noqa: E402

DAY = 86400.0

# -- the shop: two interfaces, three customers, one broken plugin file ----------------------

GREETING = """
    from taskcatalog import deprecated

    @deprecated("use v2", sunset="2020-01-01")
    def greeting_entrypoint_v1(ctx, name: str):
        return "hello " + name

    def greeting_entrypoint_v2(ctx, name: str):
        return f"Hello, {name}!"
"""

PRICING = """
    from taskcatalog import deprecated, slot

    @deprecated("use v2", sunset="2031-01-31")
    @slot("adjust", args={"value": float}, returns=float)
    def pricing_entrypoint_v1(ctx, amount: float):
        found, value = ctx.plugins.call("adjust", value=amount)
        return value if found else amount

    @slot("adjust", args={"value": float}, returns=float)
    def pricing_entrypoint_v2(ctx, amount: float):
        if amount < 0:
            raise ValueError(f"amount must be >= 0, not {amount}")
        found, value = ctx.plugins.call("adjust", value=amount)
        return value if found else amount
"""

DISCOUNT = """
    from taskcatalog import plugin_config

    @plugin_config(slot="adjust")
    def discount(ctx, value: float) -> float:
        return value * 0.9
"""

MARKUP = """
    from taskcatalog import plugin_config

    @plugin_config(version=2, slot="adjust")
    def markup(ctx, value: float) -> float:
        return value * 1.2
"""

BROKEN = """
    from taskcatalog import plugin_config

    @plugin_config(version=2, slot="adjust")
    def surcharge(ctx, value: float) -> float:
        return value +
"""


def make_shop(layout: Layout) -> Layout:
    layout.interface("greeting", GREETING)
    layout.interface("pricing", PRICING)
    layout.plugin("acme", "pricing", DISCOUNT)
    layout.plugin("globex", "pricing", MARKUP)
    layout.plugin("initech", "pricing", BROKEN)
    return layout


@pytest.fixture
def shop(layout: Layout) -> Layout:
    return make_shop(layout)


def workload(catalog: Catalog) -> None:
    """22 calls (7 failing), 12 plugin runs, an executed batch and a pending one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for _ in range(3):
            assert catalog.call("pricing", 1, Context("acme"), amount=10.0) == 9.0
    for _ in range(5):
        catalog.call("pricing", 2, Context("acme"), amount=10.0)
    assert catalog.run("pricing", 2, Context("acme"), amount=-1.0).status == "error"
    for amount in (1.0, 2.0, -1.0, -2.0):
        catalog.run("pricing", 2, Context("globex"), amount=amount)
    assert catalog.run("pricing", 2, Context("initech"), amount=1.0).status == "error"  # its plugin file is broken
    for _ in range(4):
        catalog.call("greeting", 2, None, name="Ann")
    assert catalog.run("greeting", 1, None, name="Ann").status == "error"  # retired since 2020
    batch = catalog.batches.create("pricing", 2, customer="acme", rows=[{"amount": 1.0}, {"amount": -1.0}, {"amount": 2.0}],
                                   description="November credit notes")
    batch.execute()
    catalog.batches.create("greeting", 2, rows=[{"name": "Bo"}, {"name": "Cy"}], description="welcome mails")


def filled(layout: Layout, name: str = "catalog.sqlite3") -> Path:
    """The shop's database after ``workload``, its catalog closed."""
    path = layout.root / name
    catalog = layout.catalog(database=path)
    workload(catalog)
    report = catalog.close()
    assert report is not None and report.ok
    return path


def record_days_ago(layout: Layout, path: Path, days: float, calls: Callable[[Catalog], None]) -> None:
    """Real calls, recorded as if made ``days`` ago.

    The calls run in a catalog with telemetry in memory; their records are
    taken from its buffer and stored through ``DatabaseStore.write`` (what
    the writer thread calls) under a clock offset that many days back.
    """
    source = layout.catalog()
    calls(source)
    buffers = source._buffers
    assert buffers is not None
    records = list(buffers.calls)
    offset = time.time() - days * DAY - min(r[2] for r in records) * 1e-9
    db = open_catalog_database(path)
    store = DatabaseStore(db)
    try:
        # A process prefix of its own, as the writer of another process would have.
        prefix = f"old-{os.urandom(4).hex()}"
        store.write(Batch(list(buffers.call_keys.new), list(buffers.span_keys.new), records), prefix, offset)
    finally:
        store.close()
        db.close()
        source.close()


def gathered(layout: Layout, path: Path, **options: Any) -> ReportData:
    with layout.catalog(database=path) as catalog:
        return gather(catalog, **options)


def grid(data: ReportData, interface: str) -> dict[tuple[str | None, int | None], int]:
    (found,) = [g for g in data.usage if g.interface == interface]
    return {pair: calls for pair, (calls, _) in found.cells.items()}


def series(data: ReportData) -> dict[tuple[str, int | None], int]:
    return {(s.interface, s.version): s.calls for s in data.series}


# -- the numbers behind each chart -----------------------------------------------------------


def test_catalog_part(shop):
    path = filled(shop)
    data = gathered(shop, path)
    assert [i.name for i in data.interfaces] == ["greeting", "pricing"]
    greeting, pricing = data.interfaces
    assert [(v.version, v.deprecated, v.sunset, v.retired) for v in greeting.versions] == [
        (1, "use v2", dt.date(2020, 1, 1), True), (2, None, None, False)]
    assert [(v.version, v.deprecated, v.sunset, v.retired) for v in pricing.versions] == [
        (1, "use v2", dt.date(2031, 1, 31), False), (2, None, None, False)]
    assert pricing.versions[0].slots == [("'adjust'", ["acme"])]
    assert pricing.versions[1].slots == [("'adjust'", ["acme", "globex"])]
    assert pricing.path == str(shop.interfaces / "pricing.py") and pricing.distribution is None
    (problem,) = data.problems
    # Line 6 of the file: the source above begins with an empty line.
    assert (problem.path, problem.line, problem.interface, problem.kind) == (
        str(shop.plugins / "initech" / "pricing.py"), 6, "pricing", "import")
    assert problem.message.endswith("pricing.py:6: SyntaxError: invalid syntax")


def test_an_interface_that_does_not_load(shop):
    shop.interface("billing", """
        import no_such_module_here

        def billing_entrypoint_v1(ctx):
            return 1
    """)
    with shop.catalog() as catalog:
        data = gather(catalog)
        page = Page(render(data))
    (billing,) = [i for i in data.interfaces if i.name == "billing"]
    assert billing.versions == [] and billing.error is not None
    assert "ModuleNotFoundError" in billing.error and "no_such_module_here" in billing.error
    assert f"billing-does not load: {billing.error}-this project" in page.text.replace("\n", "")
    assert [p.interface for p in data.problems] == ["billing", "pricing"]


def test_usage_grid_counts_every_call_of_all_time(shop):
    before = time.time()
    path = filled(shop)
    after = time.time()
    data = gathered(shop, path)
    assert data.recorded and data.database == str(path)
    assert [g.interface for g in data.usage] == ["greeting", "pricing"]
    assert grid(data, "greeting") == {(None, 1): 1, (None, 2): 4}
    assert grid(data, "pricing") == {("acme", 1): 3, ("acme", 2): 9, ("globex", 2): 4, ("initech", 2): 1}
    pricing = data.usage[1]
    assert pricing.versions == [1, 2] and pricing.customers == ["acme", "globex", "initech"]
    assert pricing.hidden_customers == 0 and data.hidden_interfaces == 0
    for _, last in pricing.cells.values():
        assert before - 1 <= last <= after + 1


def test_latency_series_and_call_total(shop):
    path = filled(shop)
    data = gathered(shop, path)
    assert data.calls == 22 and data.period == report_data.DAY and data.hidden_series == 0
    assert series(data) == {("greeting", 1): 1, ("greeting", 2): 4, ("pricing", 1): 3, ("pricing", 2): 14}
    with shop.catalog(database=path) as catalog:
        stats = {(s.interface, s.version): s for s in catalog.stats() if s.customer in (None, "acme")}
    for line in data.series:
        assert sum(p[3] for p in line.points) == line.calls
        for _, p50, p95, _ in line.points:
            assert 0 < p50 <= p95
    # One customer, one day: the point's percentiles are stats()'s, read from the same histogram.
    (point,) = [s for s in data.series if s.interface == "pricing" and s.version == 1][0].points
    assert (point[1], point[2]) == (stats[("pricing", 1)].p50, stats[("pricing", 1)].p95)


def test_error_rates_per_interface_and_customer(shop):
    data = gathered(shop, filled(shop))
    assert [(e.interface, e.customer, e.calls, e.errors) for e in data.errors] == [
        ("pricing", "initech", 1, 1),
        ("pricing", "globex", 4, 2),
        ("greeting", None, 5, 1),
        ("pricing", "acme", 12, 2),
    ]
    assert data.errors[3].rate == 2 / 12


def test_slowest_plugins(shop):
    data = gathered(shop, filled(shop))
    runs = {(p.interface, p.slot, p.plugin): p for p in data.plugins}
    assert {key: p.runs for key, p in runs.items()} == {
        ("pricing", "adjust", "discount"): 10, ("pricing", "adjust", "markup"): 2}
    for p in data.plugins:
        assert 0 < p.mean <= p.longest < 1
    assert [p.mean for p in data.plugins] == sorted((p.mean for p in data.plugins), reverse=True)


def test_batches_newest_first_with_failed_rows(shop):
    data = gathered(shop, filled(shop))
    pending, executed = data.batches
    assert (pending.id, pending.interface, pending.version, pending.customer, pending.status) == (
        2, "greeting", 2, None, "pending")
    assert pending.counts == {"pending": 2} and pending.rate is None and pending.failures == []
    assert pending.description == "welcome mails"
    assert (executed.id, executed.interface, executed.customer, executed.status) == (1, "pricing", "acme", "executed")
    assert executed.counts == {"ok": 2, "error": 1}
    assert executed.failures == [(2, "ValueError: amount must be >= 0, not -1.0")]
    assert executed.rate is not None and executed.rate > 0


def test_since_limits_latency_errors_and_plugins_not_usage(shop):
    path = filled(shop)

    def old_calls(catalog: Catalog) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            catalog.call("pricing", 1, Context("acme"), amount=1.0)
            catalog.call("pricing", 1, Context("acme"), amount=2.0)
        catalog.run("pricing", 2, Context("acme"), amount=-5.0)

    record_days_ago(shop, path, 10, old_calls)
    recent = gathered(shop, path, since=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3))
    assert recent.calls == 22
    assert series(recent)[("pricing", 1)] == 3
    assert grid(recent, "pricing")[("acme", 1)] == 5  # the usage grid is of all time
    assert [(e.customer, e.calls, e.errors) for e in recent.errors if e.customer == "acme"] == [("acme", 12, 2)]

    whole = gathered(shop, path, since=(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=20)).isoformat())
    assert whole.calls == 25 and whole.period == report_data.DAY
    (pricing_v1,) = [s for s in whole.series if (s.interface, s.version) == ("pricing", 1)]
    assert pricing_v1.calls == 5 and [p[3] for p in pricing_v1.points] == [2, 3]
    assert [(e.customer, e.calls, e.errors) for e in whole.errors if e.customer == "acme"] == [("acme", 15, 3)]
    assert {p.plugin: p.runs for p in whole.plugins} == {"discount": 12, "markup": 2}

    default = gathered(shop, path)  # 14 days back
    assert default.calls == 25

    hours = gathered(shop, path, since=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2))
    assert hours.period == report_data.HOUR and hours.calls == 22

    future = gathered(shop, path, since=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2))
    assert future.calls == 0 and future.series == [] and future.errors == [] and future.plugins == []
    assert grid(future, "pricing")[("acme", 1)] == 5
    assert "no calls since " in render(future)


def test_interface_limits_every_part(shop):
    path = filled(shop)
    data = gathered(shop, path, interface="greeting")
    assert [i.name for i in data.interfaces] == ["greeting"] and data.problems == []
    assert [g.interface for g in data.usage] == ["greeting"]
    assert series(data) == {("greeting", 1): 1, ("greeting", 2): 4} and data.calls == 5
    assert [(e.interface, e.customer) for e in data.errors] == [("greeting", None)]
    assert data.plugins == []
    assert [b.id for b in data.batches] == [2]
    pricing = gathered(shop, path, interface="pricing")
    assert len(pricing.problems) == 1 and [b.id for b in pricing.batches] == [1]
    assert {p.plugin for p in pricing.plugins} == {"discount", "markup"}


def test_top_limits_say_what_is_left_out(shop, monkeypatch):
    path = filled(shop)
    monkeypatch.setattr(report_data, "TOP_CUSTOMERS", 2)
    monkeypatch.setattr(report_data, "TOP_SERIES", 2)
    monkeypatch.setattr(report_data, "TOP_ERRORS", 3)
    monkeypatch.setattr(report_data, "TOP_PLUGINS", 1)
    with shop.catalog(database=path) as catalog:
        data = gather(catalog, top_interfaces=1)
    assert [g.interface for g in data.usage] == ["pricing"] and data.hidden_interfaces == 1
    assert data.usage[0].customers == ["acme", "globex"] and data.usage[0].hidden_customers == 1
    assert grid(data, "pricing") == {("acme", 1): 3, ("acme", 2): 9, ("globex", 2): 4}
    assert series(data) == {("greeting", 2): 4, ("pricing", 2): 14} and data.hidden_series == 2
    assert data.calls == 22  # every call, shown or not
    assert [e.customer for e in data.errors] == ["initech", "globex", None]
    assert len(data.plugins) == 1
    page = render(data)
    assert "1 less used interface(s) not shown" in page and "(1 more customer(s) not shown)" in page
    assert "2 more were called in this period" in page


def test_without_a_database_from_memory(shop):
    with shop.catalog() as catalog:
        for _ in range(3):
            catalog.call("pricing", 2, Context("globex"), amount=1.0)
        catalog.run("pricing", 2, Context("globex"), amount=-1.0)
        data = gather(catalog)
    assert data.database is None and data.recorded
    assert grid(data, "pricing") == {("globex", 2): 4}
    assert series(data) == {("pricing", 2): 4} and data.calls == 4
    assert [(e.customer, e.calls, e.errors) for e in data.errors] == [("globex", 4, 1)]
    assert [(p.plugin, p.runs) for p in data.plugins] == [("markup", 3)]
    assert data.batches == []
    page = render(data)
    assert "database: none (telemetry kept in memory)" in page
    assert "batches live in the catalog database: this catalog has none" in page


def test_empty_states(shop, tmp_path):
    with shop.catalog(telemetry=False) as catalog:
        off = render(gather(catalog))
    assert "telemetry is off for this catalog" in off
    assert off.count("telemetry is off for this catalog") == 4  # usage, latency, errors, plugins
    assert off.count('class="empty"') == 5  # and batches: no database

    with shop.catalog(database=filled(shop), telemetry=False) as catalog:  # batches are there all the same
        data = gather(catalog)
    assert not data.recorded and data.usage == [] and [b.id for b in data.batches] == [2, 1]
    assert render(data).count("telemetry is off for this catalog") == 4

    with shop.catalog() as catalog:
        memory = render(gather(catalog))
    assert "no calls recorded yet: without a database only this process&#x27;s calls are kept, in memory" in memory

    path = tmp_path / "new.sqlite3"
    with shop.catalog(database=path) as catalog:
        data = gather(catalog)
        fresh = render(data)
    assert data.usage == [] and data.series == [] and data.batches == [] and data.calls == 0
    assert f"no calls recorded yet in {path}: every call made through a catalog with this database is recorded there" in fresh
    assert "no calls recorded yet (see Usage above)" in fresh
    assert "no batches yet: &#x27;taskcatalog batch create ...&#x27;" in fresh

    (tmp_path / "clean").mkdir()
    clean = Layout(tmp_path / "clean")
    clean.interface("greeting", GREETING.replace('@deprecated("use v2", sunset="2020-01-01")', ""))
    with clean.catalog() as catalog:
        page = render(gather(catalog))
    assert "no problems: every file loads and every plugin fits its slot" in page
    assert "no version has a sunset date" in page


# -- the page ----------------------------------------------------------------------------------


class Page(HTMLParser):
    """What the tests look at in a page (as written, or as a browser's DOM after load)."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: Counter[str] = Counter()
        self.attributes: set[str] = set()
        self.links: list[str] = []
        self.charts: dict[str, dict[str, Any]] = {}
        self.texts: list[str] = []
        self._chart: str | None = None
        self._in: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags[tag] += 1
        self.attributes.update(name for name, _ in attrs)
        for name in ("href", "src", "xlink:href", "action", "srcset"):
            if values.get(name) is not None:
                self.links.append(str(values[name]))
        if tag == "svg":
            self._chart = values.get("id") or f"anonymous-{len(self.charts)}"
            self.charts[self._chart] = {"attrs": values, "marks": 0, "children": []}
        elif self._chart is not None:
            chart = self.charts[self._chart]
            chart["children"].append(tag)
            if "mark" in (values.get("class") or "").split():
                chart["marks"] += 1
        if tag not in ("line", "meta", "br", "img", "input", "link", "circle", "rect", "polyline"):
            self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = None
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data: str) -> None:
        if "style" not in self._in:
            self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def marks(self) -> dict[str, int]:
        return {chart: found["marks"] for chart, found in self.charts.items()}


def expected_marks(data: ReportData) -> dict[str, int]:
    """The marks every chart should draw for ``data``: one per data point (two lines per series)."""
    found: dict[str, int] = {}
    sunsets = sum(1 for i in data.interfaces for v in i.versions if v.sunset is not None)
    if sunsets:
        found["sunsets"] = sunsets
    for index, usage in enumerate(data.usage):
        found[f"usage-{index}"] = len(usage.cells)
    for index, _ in enumerate(data.series):
        found[f"latency-{index}"] = 2
    if data.errors:
        found["errors"] = len(data.errors)
    if data.plugins:
        found["plugins"] = len(data.plugins)
    if data.batches:
        found["batches"] = sum(1 for b in data.batches for count in b.counts.values() if count)
    return found


def check_charts(page: Page, data: ReportData) -> None:
    assert page.marks() == expected_marks(data)
    for chart_id, chart in page.charts.items():
        attrs = chart["attrs"]
        assert attrs.get("role") == "img" and attrs.get("aria-labelledby") == f"{chart_id}-t {chart_id}-d"
        assert chart["children"][:2] == ["title", "desc"], chart_id


def test_page_is_self_contained_and_every_chart_has_marks_title_and_table(shop, tmp_path):
    path = filled(shop)
    out = tmp_path / "out" / "report.html"
    with shop.catalog(database=path) as catalog:
        assert catalog.report(out) == str(out)
        data = gather(catalog)
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    check_charts(page, data)
    assert set(page.marks()) == {"sunsets", "usage-0", "usage-1", "latency-0", "latency-1", "latency-2", "latency-3",
                                 "errors", "plugins", "batches"}
    assert page.marks()["batches"] == 3  # pending; ok and error
    # Nothing to fetch: no script, no stylesheet, no image, no font, every link within the page.
    assert page.tags["script"] == 0 and page.tags["link"] == 0 and page.tags["img"] == 0 and page.tags["iframe"] == 0
    assert all(link.startswith("#") for link in page.links) and page.links
    assert "url(" not in text and "@import" not in text and "http://" not in text.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    # A table of the same numbers under every chart (one for all the latency small multiples).
    assert page.tags["details"] == page.tags["table"] - 1 == 1 + 2 + 1 + 1 + 1 + 1  # the catalog's table is open
    assert "@media (prefers-color-scheme: dark)" in text and "@media print" in text
    assert os.listdir(out.parent) == ["report.html"]  # written beside, renamed over: nothing left behind


def test_usage_shading_by_recency(shop):
    path = filled(shop)

    def old_greeting(catalog: Catalog) -> None:
        catalog.call("greeting", 2, Context("acme"), name="Old")

    record_days_ago(shop, path, 40, old_greeting)
    record_days_ago(shop, path, 3, lambda c: c.call("greeting", 2, Context("globex"), name="Less old"))
    with shop.catalog(database=path) as catalog:
        data = gather(catalog)
    page = render(data)
    assert grid(data, "greeting") == {(None, 1): 1, (None, 2): 4, ("acme", 2): 1, ("globex", 2): 1}
    classes = Counter(part for part in page.split('class="mark ')[1:] for part in [part.split('"')[0]])
    assert classes == {"r0": 6, "r1": 1, "r3": 1}  # within a day; within a week (globex); longer ago (acme)


def test_report_rejects_unknown_interface_before_writing(shop, tmp_path):
    out = tmp_path / "report.html"
    with shop.catalog() as catalog:
        with pytest.raises(LookupError, match="no interface 'nope' in the catalog"):
            catalog.report(out, interface="nope")
        with pytest.raises(ValueError, match="invalid interface name"):
            catalog.report(out, interface="no-such")
        with pytest.raises(ValueError, match="since must be a datetime or an ISO 8601 string, not 'yesterday'"):
            catalog.report(out, since="yesterday")
    assert not out.exists() and os.listdir(tmp_path) == ["interfaces", "plugins"]


# -- hostile text: everything that comes from files and databases is escaped -------------------

HOSTILE = '<script>console.error("pwned")</script><img src=x onerror="console.error(2)">\'"&amp; ü€😀'


def hostile_shop(root: Path) -> tuple[Layout, Path, dict[str, str]]:
    """A catalog where every text that reaches the page carries HOSTILE; the texts to find as text.

    Interface and customer names are checked identifiers, so hostile ones reach
    the page only through telemetry: a call asked for an interface by a bad
    name is recorded under that name, and a database is a file another program
    may have written (the customer row below). The rest come from files: slot
    ids, plugin names (``__qualname__``), deprecation advice, a plugin folder
    named like that, an import error's message; and from batches: a
    description, a failed row's error; and the database's path.
    """
    root.mkdir(exist_ok=True)
    layout = Layout(root)
    slot_id = f"slot {HOSTILE}"
    layout.interface("pricing", f"""
        from taskcatalog import deprecated, slot

        @deprecated({f"advice {HOSTILE}"!r}, sunset="2031-01-31")
        @slot({slot_id!r}, args={{"value": float}}, returns=float)
        def pricing_entrypoint_v1(ctx, amount: float):
            if amount < 0:
                raise ValueError({f"error {HOSTILE}"!r})
            found, value = ctx.plugins.call({slot_id!r}, value=amount)
            return value if found else amount
    """)
    layout.plugin("acme", "pricing", f"""
        from taskcatalog import plugin_config

        @plugin_config(version=1, slot={slot_id!r})
        def adjust(ctx, value: float) -> float:
            return value * 2

        adjust.__qualname__ = {f"plugin {HOSTILE}"!r}
    """)
    layout.plugin("globex", "pricing", f"raise RuntimeError({f'import {HOSTILE}'!r})\n")
    (layout.plugins / f"folder {HOSTILE.replace('/', '|')}").mkdir()
    folder = root / f"db {HOSTILE.replace('/', '|')}"
    folder.mkdir()
    path = folder / "catalog.sqlite3"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        catalog = layout.catalog(database=path)
        catalog.call("pricing", 1, Context("acme"), amount=2.0)
        assert catalog.run(f"interface {HOSTILE}", 1, Context("acme"), amount=1.0).status == "error"
        batch = catalog.batches.create("pricing", 1, customer="acme", rows=[{"amount": 1.0}, {"amount": -1.0}],
                                       description=f"description {HOSTILE}")
        batch.execute()
        catalog.close()
    customer = f"customer {HOSTILE}"
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "INSERT INTO taskcatalog_call_stats (interface, version, customer, hour, bucket, calls, errors, first_call,"
            " last_call, max_duration) VALUES ('pricing', 1, ?, ?, 100, 7, 3, ?, ?, 0.01)",
            (customer, int(time.time() // 3600), time.time(), time.time()),
        )
    db.close()
    texts = {
        "slot": repr(slot_id), "plugin": f"plugin {HOSTILE}", "advice": f"advice {HOSTILE}",
        "error": f"ValueError: error {HOSTILE}", "import": f"import {HOSTILE}",
        "folder": f"folder {HOSTILE.replace('/', '|')}", "description": f"description {HOSTILE}",
        "interface": f"interface {HOSTILE}", "customer": customer, "database": str(path),
    }
    return layout, path, texts


def check_hostile(page: Page, texts: dict[str, str]) -> None:
    text = page.text
    missing = {where: found for where, found in texts.items() if found not in text}
    assert not missing, missing
    assert page.tags["script"] == 0 and page.tags["img"] == 0
    assert not [name for name in page.attributes if name.startswith("on")]


def test_hostile_text_is_escaped_everywhere(tmp_path):
    layout, path, texts = hostile_shop(tmp_path)
    out = tmp_path / "hostile.html"
    with layout.catalog(database=path) as catalog:
        catalog.report(out)
        data = gather(catalog)
    page = Page(out.read_text(encoding="utf-8"))
    check_hostile(page, texts)
    check_charts(page, data)
    assert any(g.interface == texts["interface"] for g in data.usage)
    assert ("customer " + HOSTILE, 1) in grid(data, "pricing")


# -- the command line ------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("TASKCATALOG_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "taskcatalog", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def configured(layout: Layout) -> Path:
    database = layout.root / "var" / "catalog.sqlite3"
    (layout.root / "taskcatalog.toml").write_text(
        f'[catalog]\ninterfaces = "interfaces"\nplugins = "plugins"\ndatabase = "{database}"\n', encoding="utf-8")
    return database


def test_cli_report(shop):
    configured(shop)
    for amount in ("1.5", "2.5"):
        assert cli("call", "pricing", "2", "--customer", "acme", f"amount={amount}", cwd=shop.root).returncode == 0
    assert cli("call", "greeting", "2", "name=Ann", cwd=shop.root).returncode == 0
    done = cli("report", "--out", "out/report.html", cwd=shop.root)
    assert done.returncode == 0, done.stderr
    size = (shop.root / "out" / "report.html").stat().st_size
    assert done.stdout == f"wrote out/report.html ({size:,} bytes)\n" and done.stderr == ""
    page = Page((shop.root / "out" / "report.html").read_text(encoding="utf-8"))
    assert page.marks() == {"sunsets": 2, "usage-0": 1, "usage-1": 1, "latency-0": 2, "latency-1": 2, "plugins": 1}
    assert "3 call(s) in this period" in page.text

    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    done = cli("--json", "report", "--out", "only.html", "--interface", "pricing", "--since", since, cwd=shop.root)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer == {"report": str(shop.root / "only.html"), "bytes": (shop.root / "only.html").stat().st_size}
    page = Page((shop.root / "only.html").read_text(encoding="utf-8"))
    assert page.marks() == {"sunsets": 1, "usage-0": 1, "latency-0": 2, "plugins": 1}
    assert "interface pricing" in page.text and "greeting" not in page.text

    assert cli("report", cwd=shop.root).returncode == 0  # the default file name
    assert (shop.root / "taskcatalog-report.html").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"],
         "taskcatalog: error: ValueError: since must be a datetime or an ISO 8601 string, not 'yesterday'\n"),
        (["--interface", "nope"], "taskcatalog: error: InterfaceNotFound: no interface 'nope' in the catalog"),
        (["--interface", "no-such"], "taskcatalog: error: InvalidName: invalid interface name 'no-such'"),
        (["--out", "folder"], "taskcatalog: error: --out folder is a folder: name the file to write\n"),
        (["--bogus"], "taskcatalog: error: unrecognized arguments: --bogus"),
    ],
)
def test_cli_bad_input_is_one_line(shop, args, message):
    configured(shop)
    (shop.root / "folder").mkdir()
    done = cli("report", *(args if args[0] == "--out" else ["--out", "report.html", *args]), cwd=shop.root)
    assert done.returncode == (2 if args[0] == "--bogus" else 1) and done.stdout == ""
    assert done.stderr.startswith(message), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    left = [name for name in os.listdir(shop.root) if "report" in name] + os.listdir(shop.root / "folder")
    assert left == []  # nothing written, nothing half-written


def test_cli_report_of_the_example_checkout_without_database(tmp_path):
    out = tmp_path / "example.html"
    done = cli("report", "--out", str(out), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    page = Page(out.read_text(encoding="utf-8"))
    assert "interface_a" in page.text and "invoice_total" in page.text
    assert "no calls recorded yet: without a database only this process's calls are kept" in page.text
    assert page.marks() == {"sunsets": 1}


# -- in a real browser -------------------------------------------------------------------------

BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--mute-audio")


def find_browser() -> str | None:
    """Chromium (or Chrome): ``$TASKCATALOG_BROWSER``, else the usual names on PATH."""
    given = os.environ.get("TASKCATALOG_BROWSER")
    if given:
        return given
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


# Skipped only where no browser can be had; .ci/run installs one and sets
# TASKCATALOG_REQUIRE_BROWSER, so there a missing browser fails instead.
browser_needed = pytest.mark.skipif(
    find_browser() is None and not os.environ.get("TASKCATALOG_REQUIRE_BROWSER"),
    reason="no Chromium on PATH (apt-get install chromium, or set TASKCATALOG_BROWSER); .ci/run installs it",
)


def browse(page: Path, *args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    binary = find_browser()
    assert binary is not None, "no Chromium on PATH and TASKCATALOG_REQUIRE_BROWSER is set"
    done = subprocess.run([binary, *BROWSER_FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def dom_and_console(page: Path, profile: Path) -> tuple[str, list[str]]:
    """The DOM after load (``--dump-dom``) and every console message the page caused."""
    done = browse(page, "--enable-logging=stderr", "--v=0", "--dump-dom", profile=profile)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def screenshot(page: Path, target: Path, size: tuple[int, int], profile: Path, *args: str) -> None:
    browse(page, f"--screenshot={target}", f"--window-size={size[0]},{size[1]}", "--hide-scrollbars", *args,
           profile=profile)
    assert target.is_file()


def read_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced PNG: zlib and struct only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks = 8, []
    width = height = channels = 0
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and colour in (2, 6), (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            chunks.append(body)
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 255
        elif kind == 2:
            for i in range(stride):
                line[i] = (line[i] + previous[i]) & 255
        elif kind == 3:
            for i in range(stride):
                line[i] = (line[i] + ((line[i - channels] if i >= channels else 0) + previous[i]) // 2) & 255
        elif kind == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = previous[i]
                c = previous[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, rows


def colours(rows: list[bytes], channels: int = 3) -> Counter[bytes]:
    width = len(rows[0]) // channels
    counted: Counter[bytes] = Counter()
    for row in rows:
        counted.update(row[i * channels:i * channels + 3] for i in range(width))
    return counted


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return tmp_path / "chromium-profile"


@pytest.mark.browser
@browser_needed
def test_browser_loads_the_page_without_console_errors_and_draws_every_mark(shop, tmp_path, profile):
    path = filled(shop)
    out = tmp_path / "report.html"
    with shop.catalog(database=path) as catalog:
        catalog.report(out)
        data = gather(catalog)
    dom, console = dom_and_console(out, profile)
    assert console == []
    page = Page(dom)
    check_charts(page, data)
    assert len(page.charts) == 10
    assert "Batches" in page.text and "November credit notes" in page.text  # parsed to the end

    # The console check is a real one: a page with an error in it is caught.
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><title>bad</title><script>console.error('caught')</script>", encoding="utf-8")
    assert any("caught" in line for line in dom_and_console(bad, profile)[1])


@pytest.mark.browser
@browser_needed
def test_browser_screenshot_is_not_blank_in_light_and_dark(shop, tmp_path, profile):
    path = filled(shop)
    out = tmp_path / "report.html"
    with shop.catalog(database=path) as catalog:
        catalog.report(out)
    for scheme, args, background in (("light", (), b"\xff\xff\xff"), ("dark", ("--force-dark-mode",), b"\x15\x17\x1a")):
        shot = tmp_path / f"{scheme}.png"
        screenshot(out, shot, (1000, 1400), profile, *args)
        width, height, rows = read_png(shot.read_bytes())
        channels = len(rows[0]) // width
        assert (width, height) == (1000, 1400)
        counted = colours(rows, channels)
        assert counted.most_common(1)[0][0] == background, scheme
        assert len(counted) >= 100, f"{scheme}: only {len(counted)} colours"
        drawn = sum(count for colour, count in counted.items() if colour != background)
        assert drawn / (width * height) > 0.02, scheme


@pytest.mark.browser
@browser_needed
def test_browser_prints_the_page(shop, tmp_path, profile):
    path = filled(shop)
    out = tmp_path / "report.html"
    with shop.catalog(database=path) as catalog:
        catalog.report(out)
    pdf = tmp_path / "report.pdf"
    browse(out, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", profile=profile)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and data.count(b"/Type /Page") - data.count(b"/Type /Pages") >= 2


@pytest.mark.browser
@browser_needed
def test_browser_shows_hostile_text_as_text(tmp_path, profile):
    layout, path, texts = hostile_shop(tmp_path / "shop")
    out = tmp_path / "hostile.html"
    with layout.catalog(database=path) as catalog:
        catalog.report(out)
        data = gather(catalog)
    dom, console = dom_and_console(out, profile)
    assert console == []  # no injected script ran, no injected image failed to load
    page = Page(dom)
    check_hostile(page, texts)
    check_charts(page, data)


# -- docs/report.png ---------------------------------------------------------------------------

SCREENSHOT = ROOT / "docs" / "report.png"


def example_workload(root: Path, path: Path) -> Catalog:
    """The example catalog with a fortnight of calls (recorded day by day) in ``path``, and two batches."""
    layout = Layout.__new__(Layout)  # the example's folders, not a new tree
    layout.root, layout.interfaces, layout.plugins = root, EXAMPLES / "interfaces", EXAMPLES / "plugins"

    def day(index: int) -> Callable[[Catalog], None]:
        def calls(catalog: Catalog) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                for n in range(40 + 5 * (index % 4)):
                    catalog.run("interface_a", 1, Context("customer_1"), arg1=n, arg2=3)
                    catalog.run("interface_a", 2, Context("customer_2"), arg1=n, arg2=3 if n % 9 else None)
                    if index > 6:
                        catalog.run("interface_a", 3, Context("customer_1"), arg1=n, arg2=2, digits=1)
                    catalog.run("invoice_total", 2, Context("customer_1"), lines=[{"qty": n % 5, "price": 12.5}])
                    if index < 10 and n % 3 == 0:
                        catalog.run("invoice_total", 1, Context("customer_2"), lines=[{"qty": 1, "price": 2.0}])
        return calls

    for index in range(14):
        record_days_ago(layout, path, 13.5 - index, day(index))
    catalog = Catalog(layout.interfaces, layout.plugins, database=path)
    batch = catalog.batches.create("interface_a", 1, customer="customer_1",
                                   rows=[{"arg1": n, "arg2": 2} for n in range(40)] + [{"arg1": "x", "arg2": 2}],
                                   description="re-price October orders")
    batch.execute()
    catalog.batches.create("invoice_total", 2, customer="customer_2", rows=[{"lines": []}, {"lines": [{"qty": 1, "price": 3.0}]}],
                           description="reissue two invoices")
    return catalog


def trimmed_png(rows: list[bytes], width: int, channels: int) -> bytes:
    """A PNG of ``rows`` without the trailing rows of background colour (filter Up, zlib level 9)."""
    background = rows[-1]
    while len(rows) > 1 and rows[-1] == background:
        rows = rows[:-1]
    rows = rows + [background] * min(24, len(rows))  # a margin under the last section
    raw = bytearray()
    previous = bytes(len(rows[0]))
    for row in rows:
        raw.append(2)
        raw.extend((a - b) & 255 for a, b in zip(row, previous))
        previous = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, len(rows), 8, 2 if channels == 3 else 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw), 9))
            + chunk(b"IEND", b""))


def make_screenshot(target: Path = SCREENSHOT) -> Path:
    """Write docs/report.png: the example catalog's report in headless Chromium, 1100 px wide."""
    if find_browser() is None:
        raise SystemExit("no Chromium found (apt-get install chromium, or set TASKCATALOG_BROWSER)")
    with tempfile.TemporaryDirectory(prefix="taskcatalog-screenshot-") as folder:
        root = Path(folder)
        here = os.getcwd()
        os.chdir(root)  # the page names the database as given: var/catalog.sqlite3, not a temporary path
        try:
            catalog = example_workload(root, Path("var") / "catalog.sqlite3")
            out = root / "report.html"
            catalog.report(out)
            catalog.close()
        finally:
            os.chdir(here)
        shot = root / "shot.png"
        screenshot(out, shot, (1100, 4000), root / "profile")
        width, _, rows = read_png(shot.read_bytes())
        target.write_bytes(trimmed_png(rows, width, len(rows[0]) // width))
    return target


def test_example_workload_renders(tmp_path):
    with example_workload(tmp_path, tmp_path / "catalog.sqlite3") as catalog:
        data = gather(catalog)
        page = Page(render(data))
    assert {g.interface for g in data.usage} == {"interface_a", "invoice_total"}
    assert all(len(s.points) >= 4 for s in data.series)
    check_charts(page, data)


def test_the_committed_screenshot_is_a_picture():
    width, height, rows = read_png(SCREENSHOT.read_bytes())
    channels = len(rows[0]) // width
    assert width == 1100 and 1000 < height <= 4000
    assert len(colours(rows[::7], channels)) >= 100
    assert SCREENSHOT.stat().st_size < 600_000


if __name__ == "__main__":
    print(f"wrote {make_screenshot()}")
