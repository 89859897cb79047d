"""Telemetry (DESIGN 2.10): every call and run recorded, read back through
``stats()``, ``usage()`` and ``history()``, in memory or in the catalog
database, and never at the expense of a call.

Most tests run against every store: ``memory`` (no database: the newest
calls kept in the process) and a catalog database written by the writer
thread on each engine (``sqlite``: a file in a folder that does not exist
yet; ``postgres``: a database of the test's own on the server
``TASKCATALOG_TEST_POSTGRES`` names, skipped with the reason without one).
Tests of the database alone take the ``engine`` fixture (tests/db_engines.py)
and run on both engines from the same code; faults that only a file can have
(a lock held, a read-only file, a vanished folder, a full disk) are SQLite's,
and a connection the server drops is PostgreSQL's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from time import perf_counter

import pytest

from conftest import read_only
from db_engines import ENGINES, POSTGRES, Engine, make_engine
from taskcatalog import (
    ArgumentError,
    Catalog,
    CatalogError,
    Context,
    DatabaseError,
    InterfaceNotFound,
    InvalidName,
    PluginError,
    VersionNotFound,
    stores,
)
from taskcatalog.db import connect
from taskcatalog.records import BUCKET_STEPS, CallRecord, CallStats, PluginSpan, TelemetryReport, Usage, utc
from taskcatalog.stores import unpack

UTC = dt.timezone.utc
# A histogram percentile is the geometric middle of its bucket: within half a
# bucket's factor (2 ** (1/16)) of the true value, about 2.2 %.
HISTOGRAM_ERROR = 2 ** (1 / (2 * BUCKET_STEPS)) - 1
# time.time() and perf_counter() are different clocks; a record's UTC start is
# read from the second through their offset, which may move by microseconds.
CLOCK_SLACK = dt.timedelta(milliseconds=2)

SHOP = """
    from taskcatalog import slot

    @slot("price", args={"amount": int}, returns=int)
    @slot("notes", args={"amount": int}, returns=str, many=True)
    def shop_entrypoint_v1(ctx, amount: int = 1, work: int = 0):
        sum(range(work))  # more work, a longer call: durations differ without sleeping
        found, price = ctx.plugins.call("price", amount=amount)
        found, again = ctx.plugins.call("price", amount=amount + 1)  # the same slot twice in one call
        found, notes = ctx.plugins.call("notes", amount=amount)
        return {"price": price, "again": again, "notes": notes, "id": ctx.call_id, "version": ctx.version}

    def shop_entrypoint_v2(ctx, amount: int = 1):
        child = ctx.call("shop", 1, amount=amount)
        return {"id": ctx.call_id, "parent": ctx.parent_id, "child": child}
"""

SHOP_PLUGINS = """
    from taskcatalog import plugin_config

    @plugin_config(version=1, slot="price")
    def list_price(ctx, amount: int) -> int:
        return amount * 10

    @plugin_config(version=1, slot="notes", order=1)
    def second_note(ctx, amount: int) -> str:
        return "second"

    @plugin_config(version=1, slot="notes", order=0)
    def first_note(ctx, amount: int) -> str:
        return "first"
"""

OTHERS = {
    "broken": """
        def broken_entrypoint_v1(ctx, why="no stock"):
            raise ValueError(why)
    """,
    "fragile": """
        from taskcatalog import slot

        @slot("check", args={"amount": int})
        def fragile_entrypoint_v1(ctx, amount: int = 1):
            ctx.plugins.call("check", amount=amount)
            return "checked"
    """,
    "task": """
        from taskcatalog import BaseTask

        class Sync(BaseTask):
            def is_actionable(self, ctx, orders=(), **kwargs):
                return bool(orders)

            def execute(self, ctx, orders=()):
                return len(orders)

        task_entrypoint_v1 = Sync
    """,
    "old": """
        from taskcatalog import deprecated

        @deprecated("use v2", sunset="2999-12-31")
        def old_entrypoint_v1(ctx):
            return 1

        def old_entrypoint_v2(ctx):
            return 2
    """,
}

FRAGILE_PLUGINS = """
    from taskcatalog import plugin_config

    @plugin_config(version=1, slot="check")
    def refuse(ctx, amount: int):
        raise RuntimeError(f"refused {amount}")
"""

ACME_SHOP_SPANS = [("price", "list_price"), ("price", "list_price"), ("notes", "first_note"), ("notes", "second_note")]


@pytest.fixture
def shop(layout):
    layout.interface("shop", SHOP)
    for name, source in OTHERS.items():
        layout.interface(name, source)
    layout.plugin("acme", "shop", SHOP_PLUGINS)
    layout.plugin("acme", "fragile", FRAGILE_PLUGINS)
    return layout


@pytest.fixture(params=[pytest.param("memory", id="memory"), *ENGINES])
def recording(request, tmp_path, _postgres_databases):
    """Where the catalog records: None (memory) or the Engine of its catalog database."""
    if request.param == "memory":
        yield None
        return
    made = make_engine(request.param, tmp_path / "var")  # SQLite: a file in a folder to be made
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def options(recording):
    """The catalog's telemetry store: none (memory) or a database (on SQLite, in folders to be made)."""
    if recording is None:
        return {}
    url = recording.url("catalog")
    if not recording.postgres:
        assert not Path(url).parent.exists()
    return {"database": url}


@pytest.fixture
def catalog(shop, options, recording):
    catalog = shop.catalog(**options)
    if recording is not None and not recording.postgres:
        assert Path(options["database"]).is_file()  # its folder was made
    yield catalog
    catalog.close()


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def tick(seconds: float = 0.005) -> None:
    """Wait until the wall clock has moved on by ``seconds``: records before and after differ in time."""
    until = time.time() + seconds
    while time.time() < until:
        time.sleep(seconds / 5)


def wait_for(condition, timeout: float = 10.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.005)


def spans(record: CallRecord) -> list[tuple[object, str]]:
    return [(span.slot, span.plugin) for span in record.plugins]


def nearest_rank(durations: list[float], quantile: float) -> float:
    ordered = sorted(durations)
    return ordered[max(0, math.ceil(quantile * len(ordered)) - 1)]


def fork_quietly(start):
    """Start forked processes; Python 3.12+ warns about fork() while threads (the writer) run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return start()


# -- what a record holds -------------------------------------------------------


def test_every_call_and_run_is_recorded_with_its_fields(catalog):
    before = now()
    start = perf_counter()
    value = catalog.call("shop", 1, Context("acme"), amount=2)
    call_time = perf_counter() - start
    result = catalog.run("shop", "latest", {"customer": "acme"}, amount=3)
    bare = catalog.run("shop", 1, None)
    after = now()
    assert value["price"] == 20 and value["notes"] == ["first", "second"]
    assert (result.status, bare.status) == ("ok", "ok")

    history = catalog.history()
    assert [r.call_id for r in history] == [bare.call_id, result.value["child"]["id"], result.call_id, value["id"]]
    bare_record, child, parent, first = history
    assert all(type(r) is CallRecord for r in history)

    assert (first.call_id, first.parent_id, first.interface, first.version, first.customer) == (
        value["id"], None, "shop", 1, "acme"
    )
    assert (first.status, first.error_type, first.error) == ("ok", None, None)
    assert spans(first) == ACME_SHOP_SPANS
    assert all(type(span) is PluginSpan and 0 < span.duration < first.duration for span in first.plugins)
    assert 0 < first.duration <= call_time

    # "latest" is recorded as the version that ran; the nested call as its child.
    assert (parent.interface, parent.version, parent.customer, parent.parent_id) == ("shop", 2, "acme", None)
    assert parent.plugins == []  # the child's plugin runs are the child's
    assert (child.parent_id, child.version, child.customer) == (parent.call_id, 1, "acme")
    assert result.value["child"]["id"] == child.call_id and result.value["parent"] is None
    assert spans(child) == ACME_SHOP_SPANS
    assert 0 < child.duration < parent.duration <= result.duration
    assert parent.started <= child.started

    assert (bare_record.customer, bare_record.plugins, bare_record.version) == (None, [], 1)
    assert 0 < bare_record.duration <= bare.duration

    for record in history:
        assert record.started.tzinfo is not None and record.started.utcoffset() == dt.timedelta(0)
        assert before - CLOCK_SLACK <= record.started <= after + CLOCK_SLACK
    assert [r.started for r in history] == sorted((r.started for r in history), reverse=True)


def test_a_task_that_is_not_actionable_is_recorded_as_skipped(catalog):
    assert catalog.call("task", 1, None) is None
    skipped = catalog.run("task", 1, Context("acme"), orders=[])
    done = catalog.run("task", 1, Context("acme"), orders=[1, 2])
    assert (skipped.status, done.status, done.value) == ("skipped", "ok", 2)
    history = catalog.history()
    assert [(r.call_id, r.status, r.error) for r in history[:2]] == [(done.call_id, "ok", None), (skipped.call_id, "skipped", None)]
    assert (history[2].status, history[2].customer) == ("skipped", None)
    [stats] = catalog.stats(customer="acme")
    assert (stats.calls, stats.errors) == (2, 0)


def failing_calls():
    """(name, version, ctx, kwargs, exception type, what the record says: interface, version, customer)."""
    return [
        ("broken", 1, Context("acme"), {"why": "no stock"}, ValueError, ("broken", 1, "acme")),
        ("nope", 3, Context("acme"), {}, InterfaceNotFound, ("nope", 3, "acme")),
        ("nope", "latest", None, {}, InterfaceNotFound, ("nope", None, None)),
        ("shop", 9, {"customer": "acme"}, {}, VersionNotFound, ("shop", 9, "acme")),
        ("fragile", 1, Context("acme"), {"amount": 3}, PluginError, ("fragile", 1, "acme")),
        ("shop", 1, None, {"bogus": 1}, ArgumentError, ("shop", 1, None)),
    ]


@pytest.mark.parametrize("how", ["call", "run"])
def test_a_failing_call_is_recorded_with_its_error(catalog, how):
    expected = []
    for name, version, ctx, kwargs, error_type, key in failing_calls():
        if how == "call":
            with pytest.raises(error_type) as info:
                catalog.call(name, version, ctx, **kwargs)
            error, call_id = info.value, None
        else:
            result = catalog.run(name, version, ctx, **kwargs)
            assert (result.status, result.value, type(result.error)) == ("error", None, error_type)
            error, call_id = result.error, result.call_id
        expected.append((call_id, *key, "error", error_type.__name__, str(error)))
    history = catalog.history()
    found = [
        (r.call_id if how == "run" else None, r.interface, r.version, r.customer, r.status, r.error_type, r.error)
        for r in reversed(history)
    ]
    assert found == expected
    messages = {r.interface: r.error for r in history}
    assert messages["broken"] == "no stock"
    assert re.fullmatch(r"interface 'shop' has no version 9; versions: 1, 2 \(.*shop\.py\)", history[2].error)
    assert re.search(r"plugin refuse \(.*fragile\.py:\d+\) raised RuntimeError: refused 3$", messages["fragile"])
    by_name = {r.interface: r for r in history}
    assert spans(by_name["fragile"]) == [("check", "refuse")]  # the plugin that raised is timed too
    assert all(r.duration > 0 for r in history)


# -- history ---------------------------------------------------------------------


def test_history_filters_and_limits(catalog):
    older = [catalog.run("shop", 1, Context("acme")).call_id, catalog.run("broken", 1, None).call_id]
    tick()
    cutoff = now()
    tick()
    newer = [
        catalog.run("shop", 1, Context("globex")).call_id,
        catalog.run("task", 1, Context("acme")).call_id,
        catalog.run("broken", 1, Context("acme")).call_id,
        catalog.run("shop", 1, Context("acme")).call_id,
    ]
    everything = newer[::-1] + older[::-1]

    def ids(**filters):
        return [r.call_id for r in catalog.history(**filters)]

    assert ids() == everything
    assert ids(interface="shop") == [newer[3], newer[0], older[0]]
    assert ids(customer="acme") == [newer[3], newer[2], newer[1], older[0]]
    assert ids(status="error") == [newer[2], older[1]]
    assert ids(status="skipped") == [newer[1]]
    assert ids(status="ok") == [newer[3], newer[0], older[0]]
    assert ids(interface="broken", customer="acme", status="error") == [newer[2]]
    assert ids(limit=2) == everything[:2]
    assert ids(limit=0) == []
    assert ids(since=cutoff) == newer[::-1]
    assert ids(since=cutoff.isoformat()) == newer[::-1]
    assert ids(since=cutoff.replace(tzinfo=None).isoformat()) == newer[::-1]  # naive means UTC
    assert ids(since=cutoff.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30))).isoformat()) == newer[::-1]
    assert ids(since=cutoff, customer="acme", limit=2) == [newer[3], newer[2]]
    assert ids(since=now() + dt.timedelta(seconds=1)) == []
    assert ids(interface="nowhere") == []


@pytest.mark.parametrize(
    ("filters", "error", "message"),
    [
        ({"status": "failed"}, ValueError, "status must be 'ok', 'error' or 'skipped', not 'failed'"),
        ({"limit": -1}, ValueError, "limit must be an int >= 0, not -1"),
        ({"limit": "10"}, ValueError, "limit must be an int >= 0, not '10'"),
        ({"limit": True}, ValueError, "limit must be an int >= 0, not True"),
        ({"since": "yesterday"}, ValueError, "since must be a datetime or an ISO 8601 string, not 'yesterday'"),
        ({"since": 1700000000}, TypeError, "since must be a datetime or an ISO 8601 string, not int"),
        ({"customer": "../x"}, InvalidName, "invalid customer name '../x'"),
        ({"interface": "no such"}, InvalidName, "invalid interface name 'no such'"),
    ],
)
def test_history_refuses_bad_filters(catalog, filters, error, message):
    catalog.call("shop", 1, None)
    with pytest.raises(error) as info:
        catalog.history(**filters)
    assert str(info.value).startswith(message)


# -- stats -----------------------------------------------------------------------


def test_stats_counts_and_latency_per_interface_version_and_customer(catalog, options):
    for work in [0, 50, 3000, 200, 20000, 800, 100, 60000, 0, 5000] * 3:
        catalog.call("shop", 1, Context("acme"), work=work)
    for work in (0, 10000, 400):
        catalog.call("shop", 1, None, work=work)
    for _ in range(4):
        catalog.run("broken", 1, Context("acme"))
    catalog.run("shop", 2, Context("acme"))  # and shop v1 for acme once more, as its child

    history = catalog.history(limit=1000)
    assert len(history) == 30 + 3 + 4 + 2
    groups: dict[tuple, list[CallRecord]] = {}
    for record in history:
        groups.setdefault((record.interface, record.version, record.customer), []).append(record)

    stats = catalog.stats()
    assert all(type(s) is CallStats for s in stats)
    assert [(s.interface, s.version, s.customer) for s in stats] == [
        ("broken", 1, "acme"), ("shop", 1, None), ("shop", 1, "acme"), ("shop", 2, "acme")
    ]
    for row in stats:
        records = groups[(row.interface, row.version, row.customer)]
        durations = [r.duration for r in records]
        assert row.calls == len(records)
        assert row.errors == sum(r.status == "error" for r in records)
        assert 0 < row.p50 <= row.p95 <= row.max
        assert row.max == max(durations)  # exact in both stores
        for quantile, value in ((0.5, row.p50), (0.95, row.p95)):
            exact = nearest_rank(durations, quantile)
            if options:  # the database reads percentiles from its latency histogram
                assert abs(value - exact) <= exact * HISTOGRAM_ERROR * (1 + 1e-9), (quantile, value, exact)
            else:
                assert value == exact
    assert (stats[0].calls, stats[0].errors) == (4, 4)
    assert stats[2].calls == 31

    assert [s.calls for s in catalog.stats(interface="shop")] == [3, 31, 1]
    assert [(s.interface, s.calls) for s in catalog.stats(customer="acme")] == [("broken", 4), ("shop", 31), ("shop", 1)]
    assert catalog.stats(interface="task") == []


def test_stats_since(catalog, options):
    catalog.call("shop", 1, Context("acme"))
    catalog.run("broken", 1, Context("acme"))
    history = catalog.history()
    first = min(r.started for r in history)
    last = max(r.started for r in history)

    def calls(since):
        return sum(s.calls for s in catalog.stats(since=since))

    assert calls(first - dt.timedelta(seconds=1)) == 2
    assert calls((first - dt.timedelta(seconds=1)).isoformat()) == 2
    assert calls(now() + dt.timedelta(hours=2)) == 0
    # A moment after the last call. The database keeps its aggregates per
    # hour (so that stats read no raw record and outlive their pruning):
    # there the hour holding ``since`` counts whole, and the calls of that
    # hour are counted. In memory ``since`` is exact: nothing is left.
    since = last + dt.timedelta(milliseconds=5)
    hour = int(since.timestamp() // 3600)
    same_hour = sum(int(r.started.timestamp() // 3600) >= hour for r in history)
    assert calls(since) == (same_hour if options else 0)
    assert calls(since.isoformat()) == calls(since)


# -- usage -----------------------------------------------------------------------


def test_usage_says_who_calls_what_and_the_deprecation(catalog):
    with pytest.warns(DeprecationWarning, match=r"^old v1 is deprecated \(retired after 2999-12-31\): use v2$"):
        catalog.call("old", 1, Context("acme"))
    tick()
    with pytest.warns(DeprecationWarning):
        catalog.call("old", 1, Context("acme"))
    catalog.call("old", 2, Context("acme"))
    catalog.call("old", 2, None)
    catalog.run("nope", 1, Context("acme"))
    history = catalog.history()

    usage = catalog.usage()
    assert all(type(u) is Usage for u in usage)
    assert [(u.interface, u.version, u.customer, u.calls, u.deprecated, u.sunset) for u in usage] == [
        ("nope", 1, "acme", 1, None, None),
        ("old", 1, "acme", 2, "use v2", dt.date(2999, 12, 31)),
        ("old", 2, None, 1, None, None),
        ("old", 2, "acme", 1, None, None),
    ]
    old = usage[1]
    starts = [r.started for r in history if (r.interface, r.version) == ("old", 1)]
    assert old.first_call.utcoffset() == dt.timedelta(0) and old.last_call.utcoffset() == dt.timedelta(0)
    assert old.first_call < old.last_call
    assert abs(old.first_call - min(starts)) < CLOCK_SLACK
    assert abs(old.last_call - max(starts)) < CLOCK_SLACK
    assert [u.calls for u in catalog.usage(interface="old", customer="acme")] == [2, 1]
    assert catalog.usage(customer="globex") == []


# -- off, close, persistence ------------------------------------------------------


def test_telemetry_off_records_nothing(shop, options, recording):
    catalog = shop.catalog(telemetry=False, **options)
    assert catalog.call("shop", 1, Context("acme"))["price"] == 10
    assert catalog.run("broken", 1, None).status == "error"
    for read in (catalog.stats, catalog.usage, catalog.history):
        with pytest.raises(CatalogError) as info:
            read()
        assert str(info.value) == "telemetry is off for this catalog (telemetry=False): nothing was recorded"
    assert catalog.close() is None
    if recording is not None:
        for table in ("taskcatalog_call_batches", "taskcatalog_call_stats", "taskcatalog_call_totals"):
            assert recording.query(f"SELECT count(*) FROM {table}", name="catalog") == [(0,)]


def test_close_reports_what_became_of_the_records(shop, options):
    with shop.catalog(**options) as catalog:
        for amount in range(3):
            catalog.call("shop", 1, Context("acme"), amount=amount)
        catalog.run("broken", 1, None)
        report = catalog.close()
    assert report == TelemetryReport(written=4, unwritten=0, failures=0, error=None)
    assert report.ok and report.to_dict() == {"written": 4, "unwritten": 0, "failures": 0, "error": None}
    assert catalog.close() is None  # and so does __exit__ after it: nothing raises
    with pytest.raises(CatalogError, match=r"is closed"):
        catalog.call("shop", 1, Context("acme"))
    if catalog._telemetry is not None:
        assert not catalog._telemetry._thread.is_alive()


def test_records_persist_for_the_next_catalog_on_the_database(shop, engine):
    path = engine.url("catalog")
    first = shop.catalog(database=path)
    ids = [first.run("shop", 1, Context("acme")).call_id, first.run("broken", 1, None).call_id]
    assert first.close().written == 2

    # A second catalog of this process, with keys of its own for what it
    # records: they must not be mistaken for the first catalog's.
    second = shop.catalog(database=path)
    ids += [second.run("task", 1, Context("globex"), orders=[1]).call_id, second.run("old", 2, None).call_id]
    assert [(r.call_id, r.interface, r.customer) for r in second.history()] == [
        (ids[3], "old", None), (ids[2], "task", "globex"), (ids[1], "broken", None), (ids[0], "shop", "acme")
    ]
    assert second.close().written == 2

    third = shop.catalog(database=path)
    try:
        assert [(s.interface, s.version, s.customer, s.calls, s.errors) for s in third.stats()] == [
            ("broken", 1, None, 1, 1), ("old", 2, None, 1, 0), ("shop", 1, "acme", 1, 0), ("task", 1, "globex", 1, 0)
        ]
        assert [spans(r) for r in third.history(interface="shop")] == [ACME_SHOP_SPANS]
        assert sorted(r.call_id for r in third.history()) == sorted(ids)
    finally:
        third.close()


# -- retention ---------------------------------------------------------------------


def test_pruning_removes_old_records_but_keeps_the_aggregates(shop, engine):
    catalog = shop.catalog(database=engine.url("catalog"))
    try:
        old = [catalog.run("shop", 1, Context("acme")).call_id for _ in range(3)]
        catalog._telemetry.flush()
        tick()
        cutoff = time.time()
        tick()
        new = [catalog.run("shop", 1, Context("acme")).call_id for _ in range(2)]
        catalog._telemetry.flush()
        first_call = catalog.usage()[0].first_call

        assert catalog._telemetry.store.prune(cutoff) == 3
        assert [r.call_id for r in catalog.history()] == new[::-1]
        [stats] = catalog.stats()
        assert (stats.calls, stats.errors) == (5, 0)
        [usage] = catalog.usage()
        assert (usage.calls, usage.first_call) == (5, first_call)
        assert catalog._telemetry.store.prune(cutoff) == 0
        assert not set(old) & {r.call_id for r in catalog.history()}
    finally:
        catalog.close()


def test_retention_days_prune_records_the_writer_has_written(shop, engine, caplog):
    catalog = shop.catalog(database=engine.url("catalog"), retention_days=1e-9)  # 86 microseconds
    telemetry = catalog._telemetry
    assert telemetry.retention == pytest.approx(86400e-9)
    try:
        with caplog.at_level(logging.INFO, logger="taskcatalog.telemetry"):
            for _ in range(4):
                catalog.call("shop", 1, None)
            telemetry.flush()
            tick(0.001)
            telemetry._next_prune = 0.0  # due now, not in the writer's next minute
            telemetry._maybe_prune()
        assert catalog.history() == []
        assert [s.calls for s in catalog.stats()] == [4]
        assert [u.calls for u in catalog.usage()] == [4]
        pruned = [r for r in caplog.records if r.getMessage().startswith("telemetry: pruned ")]
        assert pruned and all(r.levelno == logging.INFO for r in pruned)
        assert sum(int(r.getMessage().split()[2]) for r in pruned) == 4
    finally:
        catalog.close()


# -- the totals behind stats() and usage() -------------------------------------------

EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def hourly_usage(engine):
    """usage() as the hourly aggregates give it: (interface, version, customer, calls, first, last)."""
    return [
        (name, version or None, who or None, int(calls), first, last)
        for name, version, who, calls, first, last in engine.query(
            "SELECT interface, version, customer, sum(calls), min(first_call), max(last_call)"
            " FROM taskcatalog_call_stats GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            name="catalog",
        )
    ]


def test_the_totals_agree_with_the_hourly_aggregates(shop, engine):
    """stats() and usage() read one row per group; stats(since=...) sums the hours: the same answer."""
    catalog = shop.catalog(database=engine.url("catalog"))
    try:
        for work in (0, 3000, 60000):  # a batch each: the totals are merged, bucket by bucket
            for customer in ("acme", "globex", None):
                catalog.run("shop", 1, Context(customer) if customer else None, work=work)
                catalog.run("broken", 1, Context(customer) if customer else None)
            catalog.run("shop", 2, Context("acme"))
            catalog._telemetry.flush()
        stats = catalog.stats()
        assert [(s.interface, s.version, s.customer, s.calls, s.errors) for s in stats] == [
            ("broken", 1, None, 3, 3), ("broken", 1, "acme", 3, 3), ("broken", 1, "globex", 3, 3),
            ("shop", 1, None, 3, 0), ("shop", 1, "acme", 6, 0), ("shop", 1, "globex", 3, 0), ("shop", 2, "acme", 3, 0),
        ]
        assert stats == catalog.stats(since=EPOCH)
        assert catalog.stats(interface="shop", customer="acme") == catalog.stats(interface="shop", customer="acme", since=EPOCH)
        usage = [(u.interface, u.version, u.customer, u.calls, u.first_call, u.last_call) for u in catalog.usage()]
        assert usage == [(*row[:4], utc(row[4]), utc(row[5])) for row in hourly_usage(engine)]
    finally:
        catalog.close()


STATS_COLUMNS = (
    "interface", "version", "customer", "hour", "bucket", "calls", "errors", "first_call", "last_call", "max_duration"
)


# SQLite only: no PostgreSQL catalog database predates 0004_call_totals, whose migration makes no totals.
def test_the_totals_count_what_was_recorded_before_them(shop, tmp_path):
    """0004_call_totals fills the totals from the hourly aggregates a database already holds."""
    path = tmp_path / "catalog.sqlite3"
    older = connect(path)
    try:
        assert older.upgrade(stores.catalog_migrations("sqlite")[:3]) == ["0001_telemetry", "0002_batches", "0003_batch_claims"]
        hour = int(time.time() // 3600) - 30
        older.create_many("taskcatalog_call_stats", [
            dict(zip(STATS_COLUMNS, row)) for row in [
                ("shop", 1, "acme", hour, 100, 3, 0, hour * 3600.0 + 10, hour * 3600.0 + 20, 2e-3),
                ("shop", 1, "acme", hour + 1, 100, 1, 0, hour * 3600.0 + 3700, hour * 3600.0 + 3700, 1e-3),
                ("shop", 1, "acme", hour + 1, 140, 1, 1, hour * 3600.0 + 3800, hour * 3600.0 + 3800, 9e-3),
                ("old", 0, "", hour, 50, 2, 0, hour * 3600.0 + 5, hour * 3600.0 + 6, 1e-5),
            ]
        ])
    finally:
        older.close()
    catalog = shop.catalog(database=path)
    try:
        stats = catalog.stats()
        assert [(s.interface, s.version, s.customer, s.calls, s.errors, s.max) for s in stats] == [
            ("old", None, None, 2, 0, 1e-5), ("shop", 1, "acme", 5, 1, 9e-3),
        ]
        assert stats == catalog.stats(since=EPOCH)
        assert [(u.interface, u.calls, u.first_call, u.last_call) for u in catalog.usage()] == [
            ("old", 2, utc(hour * 3600.0 + 5), utc(hour * 3600.0 + 6)),
            ("shop", 5, utc(hour * 3600.0 + 10), utc(hour * 3600.0 + 3800)),
        ]
        catalog.run("shop", 1, Context("acme"))  # and new records add to them
        assert [(s.interface, s.calls) for s in catalog.stats()] == [("old", 2), ("shop", 6)]
        assert catalog.stats() == catalog.stats(since=EPOCH)
    finally:
        catalog.close()


# -- faults --------------------------------------------------------------------------
# A file's faults (a lock another process holds, a read-only file or folder,
# a folder removed, a disk full) are SQLite's: each test says so. A write
# that keeps failing runs on both engines; a connection the server drops is
# PostgreSQL's (the end of this section).

# Holds the write lock until it reads a line. A line, not the end of input:
# a forked child inherits the write end of this pipe (Popen's descriptors are
# closed on exec, not on fork), so the end of input would only come once the
# child had ended, and the lock would outlive every write the child tried.
LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


@contextlib.contextmanager
def held_lock(path):
    """The database's write lock, held by another process until the block ends."""
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert locker.stdout.readline() == b"locked\n"
        yield
    finally:
        locker.communicate(b"release\n", timeout=60)  # it commits and ends
    assert locker.returncode == 0


@pytest.fixture
def reopened(shop):
    """A new catalog on the same folders and database file as another (closed at the end)."""
    opened = []

    def make(catalog, path):
        opened.append(shop.catalog(database=path))
        return opened[-1]

    yield make
    for catalog in opened:
        catalog.close()


@pytest.fixture
def database(shop, tmp_path):
    """A catalog with a database whose tables, process row and first keys are written (SQLite, or an Engine's)."""

    def make(engine=None):
        path = tmp_path / "var" / "catalog.sqlite3" if engine is None else engine.url("catalog")
        catalog = shop.catalog(database=path)
        catalog.call("shop", 1, Context("acme"))
        catalog.stats()
        return catalog, path

    return make


def locked_error(path, wait):
    """The error a telemetry write records when another process held the lock for longer than ``wait``."""
    return (
        f"DatabaseLocked: the database {path} is locked: another connection held it for more than {wait:g} s"
        " (database is locked); keep transactions short or raise timeout="
    )


# SQLite only: its one write lock, held by another process (PostgreSQL locks rows and tables: test_db_postgres.py).
def test_a_locked_database_neither_fails_nor_slows_calls(database, reopened, monkeypatch, caplog):
    monkeypatch.setattr(stores, "LOCK_WAIT", 0.3)  # how long the writer waits for the lock
    catalog, path = database()
    telemetry = catalog._telemetry
    ids, slowest = [], 0.0
    with held_lock(path), caplog.at_level(logging.WARNING, logger="taskcatalog.telemetry"):  # longer than 0.3 s
        deadline = time.monotonic() + 10
        while telemetry.failures < 1:  # until the writer thread has tried and given up
            assert time.monotonic() < deadline, "the writer never tried to write"
            start = perf_counter()
            result = catalog.run("shop", 1, Context("acme"), amount=2)
            slowest = max(slowest, perf_counter() - start)
            assert (result.status, result.value["price"]) == ("ok", 20)
            ids.append(result.call_id)
            time.sleep(0.001)  # a steady trickle of calls, not a wait for something
        # A call never waits for the lock (the writer waits, then gives up, 0.3 s).
        assert slowest < 0.15
        start = perf_counter()
        assert catalog.stats()[0].calls >= 1  # the flush before it gives up after the lock wait too
        assert perf_counter() - start < 2.0
        assert telemetry.last_error == locked_error(path, 0.3)
    warned = [r for r in caplog.records if r.getMessage().startswith("telemetry: writing ")]
    assert warned and warned[0].levelno == logging.WARNING
    assert re.fullmatch(
        rf"telemetry: writing \d+ record\(s\) failed \({re.escape(locked_error(path, 0.3))}\); will retry",
        warned[0].getMessage(),
    )
    # The lock is gone: everything is retried and arrives.
    report = catalog.close()
    assert (report.written, report.unwritten) == (1 + len(ids), 0)
    assert report.failures >= 1
    again = reopened(catalog, path)
    assert {r.call_id for r in again.history(limit=len(ids) + 10)} >= set(ids)
    assert again.stats()[0].calls == 1 + len(ids)


# SQLite only: the writer's own connection waits LOCK_WAIT for the file's write lock.
def test_close_gives_up_on_a_lock_that_is_never_released(database, monkeypatch, caplog):
    monkeypatch.setattr(stores, "LOCK_WAIT", 0.1)
    catalog, path = database()
    telemetry = catalog._telemetry
    with held_lock(path):
        for amount in range(5):
            assert catalog.call("shop", 1, Context("acme"), amount=amount)["price"] == amount * 10
        start = perf_counter()
        with caplog.at_level(logging.ERROR, logger="taskcatalog.telemetry"):
            report = telemetry.close(timeout=0.3)
        elapsed = perf_counter() - start
    assert report == TelemetryReport(written=1, unwritten=5, failures=report.failures, error=locked_error(path, 0.1))
    assert report.failures >= 1 and not report.ok
    assert elapsed < 0.3 + 2 * 0.1 + 1.0  # the timeout, a lock wait in flight, and room for a slow machine
    assert not telemetry._thread.is_alive()  # never left inside the store: the database closes next
    [logged] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged.getMessage() == f"telemetry: 5 call record(s) could not be written ({report.error})"
    assert catalog.close() == report


# SQLite only: the file's write lock, held by another process.
def test_threads_calling_while_another_process_holds_the_lock_lose_nothing(database, monkeypatch):
    monkeypatch.setattr(stores, "LOCK_WAIT", 0.2)
    catalog, path = database()
    telemetry = catalog._telemetry
    stop = threading.Event()
    made: list[list[str]] = [[] for _ in range(4)]
    failed: list[BaseException] = []

    def calls(ids):
        try:
            while not stop.is_set():
                result = catalog.run("shop", 1, Context("acme"), amount=len(ids))
                assert result.status == "ok", result.error
                ids.append(result.call_id)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failed.append(exc)

    threads = [threading.Thread(target=calls, args=(ids,)) for ids in made]
    with held_lock(path):
        for thread in threads:
            thread.start()
        wait_for(lambda: telemetry.failures >= 1, what="a write given up on the lock")
    # The lock is released while the threads call on: the next writes succeed.
    wait_for(lambda: telemetry.written > 1, what="a write after the lock")
    stop.set()
    for thread in threads:
        thread.join()
    assert failed == []
    report = catalog.close()
    sent = [call_id for ids in made for call_id in ids]
    assert all(made) and report.failures >= 1
    assert (report.written, report.unwritten) == (1 + len(sent), 0)
    ids, calls_counted = stored(path)
    assert len(ids) == len(set(ids)) == calls_counted == 1 + len(sent)
    assert set(ids) > set(sent)


# SQLite only: a folder's permissions; a server's database has none.
def test_a_read_only_database_folder_is_refused_when_the_catalog_opens(shop, tmp_path):
    folder = tmp_path / "var"
    folder.mkdir()
    path = folder / "catalog.sqlite3"
    with read_only(folder):
        with pytest.raises(DatabaseError) as info:
            shop.catalog(database=path)
    assert str(info.value) == f"the folder {folder} of the database {path} is not writable"
    assert list(folder.iterdir()) == []


# SQLite only: a file's permissions; a server's database has none.
def test_a_read_only_database_file_neither_fails_calls_and_close_reports_the_records(shop, tmp_path, caplog):
    path = tmp_path / "var" / "catalog.sqlite3"
    shop.catalog(database=path).close()  # made and migrated
    with read_only(path):
        catalog = shop.catalog(database=path)  # opens: there is nothing to migrate
        telemetry = catalog._telemetry
        try:
            results = [catalog.run("shop", 1, Context("acme"), amount=n) for n in range(4)]
            assert [r.value["price"] for r in results] == [0, 10, 20, 30]
            assert telemetry.flush() is False
            error = f"DatabaseError: cannot write the database {path}: attempt to write a readonly database"
            assert telemetry.last_error == error
            with caplog.at_level(logging.ERROR, logger="taskcatalog.telemetry"):
                report = telemetry.close(timeout=0.2)
        finally:
            catalog.close()
    assert report == TelemetryReport(written=0, unwritten=4, failures=report.failures, error=error)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"telemetry: 4 call record(s) could not be written ({error})"
    ]
    assert stored(path) == ([], 0)


# SQLite only: a file removed under its open connection.
def test_a_vanished_database_folder_neither_fails_calls_nor_loses_records_unseen(shop, tmp_path, caplog):
    folder = tmp_path / "var"
    path = folder / "catalog.sqlite3"
    catalog = shop.catalog(database=path)
    telemetry = catalog._telemetry
    try:
        catalog.run("shop", 1, Context("acme"))
        catalog.stats()  # written
        shutil.rmtree(folder)
        # SQLite would write on into the deleted file, where nothing could read them.
        results = [catalog.run("shop", 1, Context("acme"), amount=n) for n in range(3)]
        assert [r.value["price"] for r in results] == [0, 10, 20]
        assert telemetry.flush() is False
        error = (
            f"DatabaseError: the database {path} was removed or replaced after it was opened:"
            " records written to the open file would be lost; open the catalog again"
        )
        assert telemetry.last_error == error
        with caplog.at_level(logging.ERROR, logger="taskcatalog.telemetry"):
            report = telemetry.close(timeout=0.2)
    finally:
        catalog.close()
    assert report == TelemetryReport(written=1, unwritten=3, failures=report.failures, error=error)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"telemetry: 3 call record(s) could not be written ({error})"
    ]
    assert not folder.exists()


FULL = """
import json, logging, resource, signal, sys
from taskcatalog import Catalog, Context

logging.basicConfig(format="%(message)s")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
catalog = Catalog(sys.argv[1], sys.argv[2], database=sys.argv[3])
telemetry = catalog._telemetry
ids = [catalog.run("shop", 1, Context("acme")).call_id]
catalog.stats()  # written
# No file of this process may grow past 4 kB from now on: the database cannot take another page.
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
results = [catalog.run("shop", 1, Context("acme"), amount=n) for n in range(5)]
assert [r.value["price"] for r in results] == [0, 10, 20, 30, 40]
ids += [r.call_id for r in results]
assert telemetry.flush() is False
if sys.argv[4] == "recovers":
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
report = telemetry.close(timeout=0.3)
print(json.dumps({"ids": ids, "report": report.to_dict()}))
"""


# SQLite only: the file size limit of this process; a server writes its own files.
@pytest.mark.parametrize("recovers", [False, True])
def test_a_disk_that_refuses_to_grow_the_database_never_reaches_a_call(shop, tmp_path, recovers):
    path = tmp_path / "var" / "catalog.sqlite3"
    done = subprocess.run(
        [sys.executable, "-c", FULL, str(shop.interfaces), str(shop.plugins), str(path), "recovers" if recovers else "stays"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    report, ids = answer["report"], answer["ids"]
    error = f"DatabaseError: cannot write the database {path}: disk I/O error"
    assert report["error"] == error and report["failures"] >= 1
    assert f"telemetry: writing 5 record(s) failed ({error}); will retry" in done.stderr
    if recovers:
        assert (report["written"], report["unwritten"]) == (6, 0)
        assert sorted(stored(path)[0]) == sorted(ids)
    else:
        assert (report["written"], report["unwritten"]) == (1, 5)
        assert f"telemetry: 5 call record(s) could not be written ({error})" in done.stderr
        assert stored(path) == (ids[:1], 1)


# Another connection makes every telemetry write fail inside its transaction:
# a trigger refusing each new batch, in each engine's SQL.
REFUSE = {
    "sqlite": [
        "CREATE TRIGGER refuse_telemetry BEFORE INSERT ON taskcatalog_call_batches"
        " BEGIN SELECT RAISE(ABORT, 'no room for telemetry'); END"
    ],
    "postgres": [
        "CREATE FUNCTION refuse_telemetry() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'no room for telemetry' USING ERRCODE = 'check_violation'; END $$",
        "CREATE TRIGGER refuse_telemetry BEFORE INSERT ON taskcatalog_call_batches"
        " FOR EACH ROW EXECUTE FUNCTION refuse_telemetry()",
    ],
}
ALLOW = {"sqlite": "DROP TRIGGER refuse_telemetry", "postgres": "DROP TRIGGER refuse_telemetry ON taskcatalog_call_batches"}
#: The writer's last error for the refusal: the driver's class (an integrity error on both) and message.
REFUSED = {
    "sqlite": "IntegrityError: no room for telemetry",
    "postgres": "CheckViolation: no room for telemetry CONTEXT: PL/pgSQL function refuse_telemetry() line 1 at RAISE",
}


def refuse_telemetry(engine, other):
    for sql in REFUSE[engine.name]:
        other.execute(sql)


@pytest.mark.parametrize("recovers", [False, True])
def test_a_write_that_keeps_failing_never_reaches_a_call(engine, database, reopened, caplog, recovers):
    catalog, path = database(engine)
    telemetry = catalog._telemetry
    try:
        with engine.raw("catalog") as other:
            refuse_telemetry(engine, other)
            with caplog.at_level(logging.WARNING, logger="taskcatalog.telemetry"):
                results = [catalog.run("shop", 1, Context("acme"), amount=n) for n in range(5)]
                assert [r.value["price"] for r in results] == [0, 10, 20, 30, 40]
                assert telemetry.flush() is False
                assert telemetry.failures >= 1 and telemetry.last_error == REFUSED[engine.name]
                if recovers:
                    other.execute(ALLOW[engine.name])
                    report = catalog.close()
                else:
                    report = telemetry.close(timeout=0.2)
        assert any(
            r.levelno == logging.WARNING and r.getMessage().startswith("telemetry: writing ") for r in caplog.records
        )
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        if recovers:
            assert (report.written, report.unwritten, report.ok) == (6, 0, True)
            assert report.failures >= 1
            assert errors == []
            assert {r.call_id for r in reopened(catalog, path).history()} >= {r.call_id for r in results}
            assert len(stored(engine)[0]) == 6
        else:
            assert (report.written, report.unwritten) == (1, 5)
            assert report.failures >= 2 and report.error == REFUSED[engine.name]
            assert errors == [f"telemetry: 5 call record(s) could not be written ({report.error})"]
            assert len(stored(engine)[0]) == 1
    finally:
        catalog.close()


def test_a_first_write_that_fails_leaves_nothing_half_known(shop, engine):
    """The process's row, made in a first write that failed, is gone with it: the next write makes it again."""
    path = engine.url("catalog")
    shop.catalog(database=path).close()  # made and migrated, nothing recorded
    with engine.raw("catalog") as other:
        refuse_telemetry(engine, other)
        catalog = shop.catalog(database=path)
        try:
            ids = [catalog.run("shop", 1, Context("acme"), amount=n).call_id for n in range(3)]
            assert catalog._telemetry.flush() is False
            assert catalog._telemetry.last_error == REFUSED[engine.name]
            other.execute(ALLOW[engine.name])
            assert catalog.close() == TelemetryReport(written=3, unwritten=0, failures=1, error=catalog._telemetry.last_error)
        finally:
            catalog.close()
        assert other.execute("SELECT count(*) FROM taskcatalog_processes").fetchone() == (1,)
    assert sorted(stored(engine)[0]) == sorted(ids)


# PostgreSQL: the server ends the catalog's connections (a restart, a network
# cut). Simulated as tests/test_db_postgres.py does, by ending every server
# process of the database from another connection: restarting the shared
# test server would disturb the other tests.


def terminate(engine, name="catalog"):
    """End every server process of the database ``name`` but the caller's; how many there were."""
    with engine.raw(name) as conn:
        pids = [
            pid for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])
        # The signal is sent at once, the process ends a moment later.
        wait_for(
            lambda: not conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]).fetchall(),
            what="the end of the server processes",
        )
    return len(pids)


def lost(db):
    """The error of a call meeting a connection the server dropped (a regex)."""
    return rf"lost the connection to {re.escape(db.label)}: .+; the next call outside a session connects again"


def test_connections_the_postgres_server_drops_lose_no_record(shop, postgres, caplog):
    catalog = shop.catalog(database=postgres.url("catalog"))
    telemetry = catalog._telemetry
    try:
        ids = [catalog.run("shop", 1, Context("acme"), amount=n).call_id for n in range(3)]
        wait_for(lambda: telemetry.written == 3, what="a write by the writer thread")
        assert [s.calls for s in catalog.stats()] == [3]
        assert terminate(postgres) == 2  # the writer thread's connection and this thread's

        # Calls go on; the writer's next write meets the dropped connection,
        # fails, and the one after connects again: nothing is lost.
        with caplog.at_level(logging.WARNING, logger="taskcatalog.telemetry"):
            ids += [catalog.run("shop", 1, Context("acme"), amount=n).call_id for n in range(4)]
            wait_for(lambda: telemetry.written == 7, what="a write on a new connection")
        assert telemetry.failures >= 1 and re.fullmatch("DatabaseError: " + lost(catalog.database), telemetry.last_error)
        assert any(r.getMessage().startswith("telemetry: writing 4 record(s) failed (DatabaseError: lost") for r in caplog.records)

        # A question meeting this thread's dropped connection (nothing is
        # pending: the writer wrote it all) is a clear error, and the next one
        # connects again and answers.
        for read, answer in [
            (catalog.stats, lambda found: [s.calls for s in found] == [7]),
            (catalog.usage, lambda found: [u.calls for u in found] == [7]),
            (lambda: catalog.history(limit=100), lambda found: sorted(r.call_id for r in found) == sorted(ids)),
        ]:
            terminate(postgres)  # this thread's connection, if the last question made one, and the writer's
            with pytest.raises(DatabaseError, match=f"^{lost(catalog.database)}$"):
                read()
            assert answer(read())

        # Dropped again with calls waiting: close() connects again and writes them.
        assert terminate(postgres) >= 1  # this thread's connection (the writer's is gone since the last drop)
        ids += [catalog.run("shop", 1, Context("acme"), amount=n).call_id for n in range(5)]
        report = catalog.close()
        assert (report.written, report.unwritten) == (12, 0)
        # The first drop's failed write at least; close() writes through the writer's connection
        # in this thread, which may have been opened after the last drop (then nothing fails).
        assert report.failures >= 1
    finally:
        catalog.close()
    assert sorted(stored(postgres)[0]) == sorted(ids) and stored(postgres)[1] == 12
    assert postgres.query("SELECT calls FROM taskcatalog_call_totals", name="catalog") == [(12,)]


@contextlib.contextmanager
def psycopg_admin():
    """A connection to the test server's own database (autocommit), outside the library."""
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        yield conn


def test_records_for_a_postgres_server_that_stays_away_are_counted_by_close(shop, postgres, caplog):
    catalog = shop.catalog(database=postgres.url("catalog"))
    telemetry = catalog._telemetry
    [(name,)] = postgres.query("SELECT current_database()", name="catalog")
    with psycopg_admin() as admin:
        try:
            written = [catalog.run("shop", 1, Context("acme"), amount=n).call_id for n in range(3)]
            assert [s.calls for s in catalog.stats()] == [3]
            # No connection comes back: the database refuses new ones, then its own end.
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
            wait_for(
                lambda: not admin.execute("SELECT 1 FROM pg_stat_activity WHERE datname = %s", [name]).fetchall(),
                what="the end of the server processes",
            )
            results = [catalog.run("shop", 1, Context("acme"), amount=n) for n in range(4)]
            assert [r.value["price"] for r in results] == [0, 10, 20, 30]  # calls never notice
            with caplog.at_level(logging.ERROR, logger="taskcatalog.telemetry"):
                report = telemetry.close(timeout=0.3)
            assert (report.written, report.unwritten) == (3, 4) and not report.ok
            assert report.failures >= 1 and report.error.startswith("DatabaseError: ")
            assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
                f"telemetry: 4 call record(s) could not be written ({report.error})"
            ]
            assert catalog.close() == report
        finally:
            catalog.close()
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert sorted(stored(postgres)[0]) == sorted(written)  # every record written or counted as not


# -- what the recorder survives ----------------------------------------------------


def test_calls_with_keys_that_are_no_names_are_recorded(catalog, options):
    attempts = [
        ((123, 1, None), InvalidName, "123", 1, None),
        ((None, "latest", None), InvalidName, "None", None, None),
        ((["x"], [1], None), InvalidName, "['x']", None, None),
        (("shop", 1, {"customer": "../x"}), InvalidName, "shop", 1, None),
        (("shop", 1, {"customer": 5}), InvalidName, "shop", 1, None),
        (("shop", 1, {}), ArgumentError, "shop", 1, None),
        (("shop", 1, object()), ArgumentError, "shop", 1, None),
    ]
    for args, error, *_ in attempts:
        result = catalog.run(*args)
        assert (result.status, type(result.error)) == ("error", error)
    fine = catalog.run("shop", 1, Context("acme"))
    history = catalog.history()
    assert history[0].call_id == fine.call_id and history[0].status == "ok"
    assert [(r.interface, r.version, r.customer, r.status, r.error_type) for r in reversed(history[1:])] == [
        (name, version, customer, "error", error.__name__) for _, error, name, version, customer in attempts
    ]
    if options:
        report = catalog.close()
        assert (report.written, report.unwritten, report.failures) == (len(attempts) + 1, 0, 0)


def test_a_message_that_is_not_utf8_does_not_poison_the_records(catalog, options):
    # A file name decoded with surrogateescape: a lone surrogate, which SQLite
    # would store as invalid UTF-8 that sqlite3 cannot read back.
    failed = catalog.run("broken", 1, Context("acme"), why="no file caf\udce9.txt")
    named = catalog.run("caf\udce9", 1, None)
    fine = catalog.run("shop", 1, None)
    assert (failed.status, named.status, type(named.error), fine.status) == ("error", "error", InvalidName, "ok")
    history = catalog.history()
    assert [r.call_id for r in history] == [fine.call_id, named.call_id, failed.call_id]
    if options:  # stored as readable text, the surrogate written out
        assert (history[2].error, history[1].interface) == ("no file caf\\udce9.txt", "caf\\udce9")
    else:  # kept as it was
        assert (history[2].error, history[1].interface) == ("no file caf\udce9.txt", "caf\udce9")
    assert sorted(s.interface for s in catalog.stats()) == sorted(["broken", history[1].interface, "shop"])
    assert len(catalog.usage()) == 3


def test_a_nul_character_does_not_poison_the_records(catalog, options):
    # PostgreSQL's text cannot hold NUL, nor can its JSON functions take \u0000
    # apart: a key holding one could never be written (nor any batch after it,
    # which carries the keys not yet written), a message holding one would fail
    # every history(). SQLite cut the text at it.
    failed = catalog.run("broken", 1, Context("acme"), why="no \x00 stock")
    named = catalog.run("a\x00b", 1, None)
    fine = catalog.run("shop", 1, None)
    assert (failed.status, named.status, type(named.error), fine.status) == ("error", "error", InvalidName, "ok")
    history = catalog.history()
    assert [r.call_id for r in history] == [fine.call_id, named.call_id, failed.call_id]
    if options:  # stored as readable text, the NUL written out
        assert (history[2].error, history[1].interface) == ("no \\x00 stock", "a\\x00b")
    else:  # kept as it was
        assert (history[2].error, history[1].interface) == ("no \x00 stock", "a\x00b")
    assert sorted(s.interface for s in catalog.stats()) == sorted(["broken", history[1].interface, "shop"])
    assert len(catalog.usage()) == 3
    if options:
        report = catalog.close()
        assert (report.written, report.unwritten, report.failures) == (3, 0, 0)


def test_writing_costs_no_more_with_many_keys(shop, engine):
    """Each new (interface, version, customer) is a key; writing a batch must not scan them all per group."""
    catalog = shop.catalog(database=engine.url("catalog"))
    try:
        catalog.stats()
        for version in range(3, 6003):  # 6,000 keys, 6,000 groups
            catalog.run("shop", version, None)
        start = perf_counter()
        catalog.stats()  # flushes what is left, waiting for a write in progress
        assert perf_counter() - start < 2.0  # about 0.05 s; 13 s when SQLite scanned keys x groups
        assert sum(s.calls for s in catalog.stats()) == 6000
    finally:
        catalog.close()


# -- several processes ----------------------------------------------------------------


def calls_in_a_process(interfaces, plugins, database, count, close, barrier, sender):
    """Run in another process: ``count`` calls into the catalog database, then close() or not.

    With a ``barrier``, the calls start when every process is ready to make them.
    """
    catalog = Catalog(interfaces, plugins, database=database)
    if barrier is not None:
        barrier.wait(timeout=60)
    ids = [catalog.run("shop", 1, Context("acme"), amount=n).call_id for n in range(count)]
    report = catalog.close() if close else None
    sender.send((ids, None if report is None else (report.written, report.unwritten)))
    sender.close()


def calls_with_the_inherited_catalog(catalog, count, sender):
    """Run in a forked child: calls through the parent's catalog object, and no close()."""
    ids = [catalog.run("shop", 1, Context("acme"), amount=n).call_id for n in range(count)]
    sender.send(ids)
    sender.close()


_INHERITED: dict[str, Catalog] = {}


def pool_task(count):
    """Run in a forked Pool worker, with the catalog it inherited."""
    catalog = _INHERITED["catalog"]
    return [catalog.run("shop", 1, None, amount=n).call_id for n in range(count)]


def run_processes(context, target, arguments):
    """Start one process per argument tuple (each ends with a pipe end to send on); their messages."""
    pipes = [context.Pipe(duplex=False) for _ in arguments]
    processes = [context.Process(target=target, args=(*args, sender)) for args, (_, sender) in zip(arguments, pipes)]
    try:
        fork_quietly(lambda: [process.start() for process in processes])
        for _, sender in pipes:
            sender.close()
        messages = [receiver.recv() for receiver, _ in pipes]
        for process in processes:
            process.join(timeout=60)
        assert [process.exitcode for process in processes] == [0] * len(processes)
        return messages
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)
        for receiver, _ in pipes:
            receiver.close()


def stored(where):
    """(call ids, sum of stats calls) in the catalog database of an Engine, or a SQLite file, read by the driver."""
    if not isinstance(where, Engine):
        where = Engine("sqlite", Path(where).parent)  # its url("catalog") is the file
        assert where.url("catalog") == str(where.folder / "catalog.sqlite3")
    # The records as stored (a pickle per batch), taken apart with the store's own reader.
    prefixes = dict(where.query("SELECT id, prefix FROM taskcatalog_processes", name="catalog"))
    ids = [
        f"{prefixes[process]}-{record[0]}"
        for process, records in where.query("SELECT process, records FROM taskcatalog_call_batches ORDER BY id", name="catalog")
        for record in unpack(records)
    ]
    [(calls,)] = where.query("SELECT coalesce(sum(calls), 0) FROM taskcatalog_call_stats", name="catalog")
    return ids, int(calls)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_four_processes_record_into_one_database_at_once(shop, engine, method):
    path = engine.url("catalog")
    shop.catalog(database=path).close()  # made and migrated: the four only record
    count = 2000
    context = multiprocessing.get_context(method)
    barrier = context.Barrier(4)
    arguments = [(str(shop.interfaces), str(shop.plugins), str(path), count, True, barrier)] * 4
    messages = run_processes(context, calls_in_a_process, arguments)
    assert [report for _, report in messages] == [(count, 0)] * 4
    sent = [call_id for ids, _ in messages for call_id in ids]
    ids, calls = stored(engine)
    assert len(ids) == len(set(ids)) == 4 * count == calls
    assert set(ids) == set(sent)
    catalog = shop.catalog(database=path)
    try:
        assert [(s.interface, s.customer, s.calls) for s in catalog.stats()] == [("shop", "acme", 4 * count)]
        assert len({r.call_id for r in catalog.history(limit=10_000)}) == 4 * count
    finally:
        catalog.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_that_never_close_flush_as_they_end(shop, engine, method):
    path = engine.url("catalog")
    arguments = [(str(shop.interfaces), str(shop.plugins), str(path), 50, False, None)] * 2
    messages = run_processes(multiprocessing.get_context(method), calls_in_a_process, arguments)
    sent = [call_id for ids, _ in messages for call_id in ids]
    ids, calls = stored(engine)  # written by multiprocessing.util.Finalize as each worker ended
    assert sorted(ids) == sorted(sent) and calls == 100


def test_forked_children_record_their_own_calls_and_not_the_parents(shop, engine):
    path = engine.url("catalog")
    catalog = shop.catalog(database=path)
    try:
        catalog.stats()
        parent_ids = [catalog.run("shop", 1, Context("acme")).call_id for _ in range(3)]  # buffered at the fork
        messages = run_processes(
            multiprocessing.get_context("fork"), calls_with_the_inherited_catalog, [(catalog, 40), (catalog, 40)]
        )
        parent_ids.append(catalog.run("shop", 1, None).call_id)
        assert catalog.close().written == 4
    finally:
        catalog.close()
    child_ids = [call_id for ids in messages for call_id in ids]
    prefixes = {call_id.rpartition("-")[0] for call_id in child_ids}
    assert len(prefixes) == 2 and parent_ids[0].rpartition("-")[0] not in prefixes  # a call id prefix each
    ids, calls = stored(engine)
    assert len(ids) == len(set(ids)) == calls == 84  # nothing of the parent's written twice
    assert set(ids) == set(parent_ids) | set(child_ids)


# SQLite only: its process-wide mutexes and file lock at a fork (a forked child sets PostgreSQL connections aside).
def test_a_fork_during_a_write_leaves_both_processes_recording(database, monkeypatch):
    """The fork waits for the write in progress (the child must not inherit SQLite in the middle of one)."""
    monkeypatch.setattr(stores, "LOCK_WAIT", 0.3)
    catalog, path = database()
    telemetry = catalog._telemetry
    parent_ids = [catalog.run("shop", 1, Context("acme")).call_id for _ in range(3)]
    flusher = threading.Thread(target=telemetry.flush)
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=calls_with_the_inherited_catalog, args=(catalog, 20, sender))
    # The lock is held by another process: a connection of this one holding
    # it at the fork would leave the child's SQLite believing it still held.
    with held_lock(path):
        flusher.start()
        wait_for(telemetry._flushing.locked, what="a flush")
        fork_quietly(child.start)
        # The lock is still held: the write can only have ended by giving up,
        # so the fork, which waited for it, finds that failure counted.
        assert telemetry.failures >= 1
        sender.close()
    flusher.join()
    try:
        child_ids = receiver.recv()
        child.join(timeout=60)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.terminate()
            child.join(timeout=10)
        receiver.close()
    assert catalog.close().unwritten == 0
    ids, calls = stored(path)
    assert len(ids) == len(set(ids)) == calls == 1 + 3 + 20
    assert set(ids) >= set(parent_ids) | set(child_ids)


def calls_before_and_after_the_parent_closes(catalog, written, parent_closed, sender):
    """Run in a forked child: calls written while the parent's catalog is open, then more once it closed."""
    ids = [catalog.run("shop", 1, Context("acme"), amount=n).call_id for n in range(10)]
    assert catalog._telemetry.flush()
    written.set()
    assert parent_closed.wait(timeout=60)
    ids += [catalog.run("shop", 1, Context("acme"), amount=n).call_id for n in range(10)]
    sender.send(ids)
    sender.close()  # and no close(): the records are written as the worker ends


def test_a_forked_worker_recording_after_its_parent_closed_loses_nothing(shop, engine):
    """The parent's last connection must not take the write-ahead log from under the child (db/sqlite/threads.py),
    nor close a server connection the child uses (db/postgres/threads.py)."""
    path = engine.url("catalog")
    catalog = shop.catalog(database=path)
    parent_id = catalog.run("shop", 1, None).call_id
    catalog.stats()
    context = multiprocessing.get_context("fork")
    written, parent_closed = context.Event(), context.Event()
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=calls_before_and_after_the_parent_closes, args=(catalog, written, parent_closed, sender))
    try:
        fork_quietly(child.start)
        sender.close()
        assert written.wait(timeout=60)
        assert catalog.close().written == 1  # the parent's last connection to the file closes here
        parent_closed.set()
        child_ids = receiver.recv()
        child.join(timeout=60)
        assert child.exitcode == 0
    finally:
        catalog.close()
        if child.is_alive():
            child.terminate()
            child.join(timeout=10)
        receiver.close()
    ids, calls = stored(engine)
    assert sorted(ids) == sorted([parent_id, *child_ids]) and calls == 21


def test_forked_pool_workers_flush_when_the_pool_closes(shop, engine):
    path = engine.url("catalog")
    catalog = _INHERITED["catalog"] = shop.catalog(database=path)
    try:
        parent_id = catalog.run("shop", 1, None).call_id
        pool = fork_quietly(lambda: multiprocessing.get_context("fork").Pool(2))
        try:
            results = pool.map(pool_task, [30] * 4)
            pool.close()  # the workers end normally and run their finalizers
            pool.join()
        finally:
            pool.terminate()
        assert catalog.close().written == 1
    finally:
        del _INHERITED["catalog"]
        catalog.close()
    ids, calls = stored(engine)
    assert sorted(ids) == sorted([parent_id, *(call_id for ids in results for call_id in ids)])
    assert calls == 121


CHILD = """
import sys
from taskcatalog import Catalog, Context

catalog = Catalog(sys.argv[1], sys.argv[2], database=sys.argv[3])
ids = [catalog.run("shop", 1, Context("acme"), amount=n).call_id for n in range(25)]
print(" ".join(ids))
# no close(): the records are written at interpreter exit
"""


def test_a_program_that_exits_without_close_flushes_at_exit(shop, engine):
    path = engine.url("catalog")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(shop.interfaces), str(shop.plugins), str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, "")
    ids, calls = stored(engine)
    assert sorted(ids) == sorted(done.stdout.split()) and calls == 25


# -- the page that documents all this ---------------------------------------------------

PAGE = Path(__file__).resolve().parents[1] / "docs" / "telemetry.md"


def test_the_telemetry_page_examples_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_telemetry"}
    try:
        for number, block in enumerate(blocks, 1):
            exec(compile(block, f"{PAGE.name} example {number}", "exec"), namespace)
    finally:
        for value in list(namespace.values()):
            if isinstance(value, Catalog):
                value.close()
    out = capsys.readouterr().out
    for text in [
        "shop 1 acme calls=3 errors=1", "\n3 3\n", "TelemetryReport(written=", "unwritten=0",
        "['first']\n['first', 'second']\nvar/customers/acme.sqlite3\n",
    ]:
        assert text in out, out


def test_records_stored_in_older_forms_are_read_beside_the_new_ones(shop, engine):
    """Batches of records written before 0006_packed_records hold JSON text (UTF-8 bytes on
    PostgreSQL, whose column became BYTEA), those written since, until the short record forms, a
    pickled list of longer tuples (each plugin run with its start); history() and the report read
    them with the new ones."""
    import pickle

    from taskcatalog.report_data import gather

    url = engine.url("catalog")
    with shop.catalog(database=url) as catalog:
        packed = catalog.run("shop", 1, Context("acme"))
    [(process,)] = engine.query("SELECT id FROM taskcatalog_processes", name="catalog")
    [(call_key,)] = engine.query("SELECT key FROM taskcatalog_call_keys", name="catalog")
    plugin_key = engine.query("SELECT key FROM taskcatalog_plugin_keys ORDER BY key", name="catalog")[0][0]
    clock = time.time()
    old = json.dumps([[900, call_key, 0, 2_000_000, "ok", None, None, None, [[plugin_key, 10, 1_500_000]]]])
    packed_0006 = pickle.dumps(
        [(901, call_key, 0, 3_000_000, "error", None, "ValueError", "no", plugin_key, 10, 2_500_000)], 5
    )
    with engine.raw("catalog") as conn:
        for age, value in ((60, old.encode() if engine.postgres else old), (30, packed_0006)):
            conn.execute(
                ("INSERT INTO taskcatalog_call_batches (process, clock, calls, earliest, latest, records)"
                 " VALUES (?, ?, 1, ?, ?, ?)").replace("?", "%s" if engine.postgres else "?"),
                (process, clock - age, clock - age, clock - age, value),
            )
    with shop.catalog(database=url) as catalog:
        history = catalog.history()
        prefix = packed.call_id.rpartition("-")[0]
        assert [r.call_id for r in history] == [packed.call_id, f"{prefix}-901", f"{prefix}-900"]
        assert [(r.status, r.error_type, r.error) for r in history] == [
            ("ok", None, None), ("error", "ValueError", "no"), ("ok", None, None)
        ]
        assert history[2].duration == pytest.approx(0.002) and history[2].plugins[0].duration == pytest.approx(0.0015)
        assert history[1].duration == pytest.approx(0.003) and history[1].plugins[0].duration == pytest.approx(0.0025)
        assert history[1].plugins[0].slot == history[2].plugins[0].slot == history[0].plugins[0].slot
        timings = gather(catalog, since="2020-01-01").plugins
        runs = {(t.slot, t.plugin): t.runs for t in timings}
        first = (history[2].plugins[0].slot, history[2].plugins[0].plugin)
        assert runs[first] == 4  # the new record runs that plugin twice (ACME_SHOP_SPANS), each older one once


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_unpacking_stored_records_refuses_anything_but_plain_data():
    """A database is not trusted to name code to run: a pickle naming any class or function is refused."""
    import pickle

    from taskcatalog.stores import pack

    plain = [(1, 2, 3, 4), (2, 3, 5, 6, "error", "p-1", "ValueError", "caf\udce9\x00", 4, 7), (3, 2, 5, 6, 4, 7, 6, 8)]
    assert unpack(pack(plain)) == [
        (1, 2, 3, 4, "ok", None, None, None, []),
        (2, 2, 5, 6, "error", "p-1", "ValueError", "caf\udce9\x00", [(4, 7)]),
        (3, 2, 5, 6, "ok", None, None, None, [(4, 7), (6, 8)]),
    ]
    with pytest.raises(ValueError, match=r"^telemetry records packed in an unknown form \(3\): written by a newer taskcatalog\?$"):
        unpack(pickle.dumps((3, []), 5))
    with pytest.raises(ValueError, match=r"^telemetry records packed in an unknown form \('dict'\)"):
        unpack(pickle.dumps({}, 5))
    with pytest.raises(pickle.UnpicklingError, match=r"^telemetry records hold plain data only, not posix\.system$"):
        unpack(pickle.dumps([_RunsCode()], 5))
    with pytest.raises(pickle.UnpicklingError, match=r"^telemetry records hold plain data only, not __builtin__\.set$"):
        unpack(pickle.dumps([{1, 2}], 2))  # protocol 2 names set's class (as Python 2 called its module)


def test_on_postgres_close_gives_up_on_a_lock_held_past_the_writers_lock_wait(shop, postgres, monkeypatch, caplog):
    """The writer's own connection waits LOCK_WAIT (PostgreSQL's lock_timeout for it), not the catalog
    connection's 30 s: a table lock another connection never releases costs close() about its timeout."""
    monkeypatch.setattr(stores, "LOCK_WAIT", 0.2)
    catalog = shop.catalog(database=postgres.url("catalog"))
    telemetry = catalog._telemetry
    catalog.call("shop", 1, Context("acme"))
    catalog.stats()  # written: the tables, the process row and the first keys exist
    with postgres.holding_writes("taskcatalog_call_stats", name="catalog"):
        for amount in range(5):
            assert catalog.call("shop", 1, Context("acme"), amount=amount)["price"] == amount * 10
        start = perf_counter()
        with caplog.at_level(logging.ERROR, logger="taskcatalog.telemetry"):
            report = telemetry.close(timeout=0.5)
        elapsed = perf_counter() - start
    label = catalog.database.label
    assert report == TelemetryReport(
        written=1, unwritten=5, failures=report.failures,
        error=f"DatabaseLocked: the database {label} is locked: another connection held a lock for more than 0.2 s"
              " (canceling statement due to lock timeout); keep transactions short or raise timeout=",
    )
    assert elapsed < 0.5 + 2 * 0.2 + 1.0  # the timeout, a lock wait in flight, and room for a slow machine
    catalog.close()


# -- the writer's aggregation ---------------------------------------------------------

def reference_aggregate(calls, wall_offset):
    """What stores.aggregate must give, the plain way: one pass, a dict per group and per (key, hour)."""
    offset, hour_ns = int(wall_offset * 1e9), 3600 * 10**9
    groups, spans = {}, {}
    for record in calls:
        _, key, start, nanoseconds, status, *_ = stores.unfold(record)
        hour = (start + offset) // hour_ns
        bucket = stores._bucket_ns(nanoseconds)
        assert stores.bucket_upper(bucket) * 1e9 >= nanoseconds > (stores.bucket_upper(bucket - 1) * 1e9 if bucket else 0)
        count, errors, longest = groups.get((key, hour, bucket), (0, 0, 0))
        groups[key, hour, bucket] = (count + 1, errors + (status == "error"), max(longest, nanoseconds))
        first, last = spans.get((key, hour), (start, start))
        spans[key, hour] = (min(first, start), max(last, start))
    return sorted(
        [key, hour, bucket, count, errors, spans[key, hour][0] * 1e-9 + wall_offset,
         spans[key, hour][1] * 1e-9 + wall_offset, longest * 1e-9]
        for (key, hour, bucket), (count, errors, longest) in groups.items()
    )


@pytest.mark.parametrize("keys", [1, 5])
@pytest.mark.parametrize("order", ["in order", "shuffled"])
@pytest.mark.parametrize("across_an_hour", [False, True])
def test_the_writer_aggregates_a_batch_as_a_plain_loop_would(keys, order, across_an_hour):
    """Every path of stores.aggregate (one key or several; starts in order or not, as threads record
    them; a batch within an hour or across one; records in both forms of telemetry.RawCall): per
    (key, hour, bucket) the calls, errors and the longest call, and the first and last start of the
    key's calls in that hour."""
    import random

    rng = random.Random(f"{keys} {order} {across_an_hour}")
    wall_offset = 1_764_000_000.25
    hour_ns = 3600 * 10**9
    # perf_counter_ns() readings: the batch starts 2 s before an hour ends, or in the middle of one.
    first = hour_ns - int(wall_offset * 1e9) % hour_ns - (2 * 10**9 if across_an_hour else hour_ns // 2)
    calls = []
    for number in range(5000):
        start = first + number * 1_000_000 + rng.randrange(1000)  # 5 s in all
        duration = rng.choice([rng.randrange(800, 1300), rng.randrange(1, 10**7), 10**13])
        key = rng.randrange(keys) * 2 + 2
        form = rng.choice(["short"] * 6 + ["nested", "error", "skipped"])
        if form == "short":
            calls.append((number, key, start, duration, 10, 3))
        else:
            status = "ok" if form == "nested" else form
            error = ("ValueError", "no") if status == "error" else (None, None)
            calls.append((number, key + 1, start, duration, status, "p-1" if form == "nested" else None, *error, 10, 3))
    if order == "shuffled":
        rng.shuffle(calls)
    expected = reference_aggregate(calls, wall_offset)
    assert len({(group[0], group[1]) for group in expected}) == keys * (2 if across_an_hour else 1)
    assert sorted(stores.aggregate(calls, wall_offset)) == expected
    assert sorted(stores.aggregate(tuple(calls), wall_offset)) == expected  # as the writer hands them


def test_records_pack_the_same_without_the_picklers_fast_mode(monkeypatch):
    """``Pickler.fast`` is documented as deprecated: a Python without it packs with the memo, readably."""
    import pickle

    class WithoutFast(pickle.Pickler):
        @property
        def fast(self):
            raise AttributeError("fast")

        @fast.setter
        def fast(self, value):
            raise AttributeError("fast")

    records = [(1, 2, 3, 4, 6, 5), (2, 3, 5, 6, "error", "p-1", "ValueError", "no")]
    expected = [(1, 2, 3, 4, "ok", None, None, None, [(6, 5)]), (2, 2, 5, 6, "error", "p-1", "ValueError", "no", [])]
    assert unpack(stores.pack(records)) == expected
    monkeypatch.setattr(stores.pickle, "Pickler", WithoutFast)
    packed = stores.pack(records)
    assert unpack(packed) == expected
    assert b"\x94" in packed  # MEMOIZE: the memo was used
