"""Moving a catalog database to another engine (taskcatalog/copying.py, ``taskcatalog db copy URL``).

Each test fills a catalog database on one engine through the catalog itself
(telemetry with plugin runs and errors, batches executed, pending and
dependent), copies it to another, and opens a catalog on the copy: what it
answers (stats, usage, history, batches and their rows) is what the source
answered, and it goes on working there (new calls, new batches with new ids).
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_projects import project_on, tc
from conftest import Layout
from db_engines import Engine, _postgres_databases, make_engine  # noqa: F401 - the fixture is used by name
from taskcatalog import BatchFrozen, CatalogError, Context
from taskcatalog.copying import CATALOG_TABLES, copy_catalog_database
from taskcatalog.db import connect
from taskcatalog.report_data import gather

ECHO = """
    from taskcatalog import slot

    @slot("scale", args={"a": int, "b": float}, returns=float)
    def echo_entrypoint_v1(ctx, x: int):
        if x < 0:
            raise ValueError(f"x={x} is negative")
        found, value = ctx.plugins.call("scale", a=x, b=2.0)
        return {"x": x, "scaled": value if found else None, "unjsonable": {1, 2} if x == 7 else None}
"""
TIMES = """
    from taskcatalog import plugin_config

    @plugin_config(version=1, slot="scale")
    def times(ctx, a: int, b: float) -> float:
        return a * b
"""


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    (tmp_path / "catalog").mkdir()
    made = Layout(tmp_path / "catalog")
    made.interface("echo", ECHO)
    made.plugin("acme", "echo", TIMES)
    return made


@pytest.fixture(params=[
    pytest.param(("sqlite", "postgres"), id="sqlite-to-postgres", marks=pytest.mark.postgres),
    pytest.param(("postgres", "sqlite"), id="postgres-to-sqlite", marks=pytest.mark.postgres),
    pytest.param(("sqlite", "sqlite"), id="sqlite-to-sqlite"),
])
def engines(request, tmp_path: Path, _postgres_databases) -> Iterator[tuple[Engine, Engine]]:
    """(source engine, target engine), each with databases of its own."""
    source = make_engine(request.param[0], tmp_path / "source")
    target = make_engine(request.param[1], tmp_path / "target")
    for made in (source, target):
        made.folder.mkdir()
    try:
        yield source, target
    finally:
        source.close()
        target.close()


def fill(layout: Layout, url: str) -> None:
    """Calls (ok, error, with and without a plugin, nested in batches) and batches in every state."""
    with layout.catalog(database=url) as catalog:
        for x in range(5):
            catalog.call("echo", 1, Context("acme"), x=x)
            catalog.call("echo", 1, Context("zed"), x=x)
        catalog.run("echo", 1, Context("acme"), x=-1)
        done = catalog.batches.create("echo", 1, "acme", rows=[{"x": x} for x in (1, -2, 7)], description="first")
        done.execute()
        waiting = catalog.batches.create("echo", 1, None, rows=[{"x": 3}], depends_on=[done], description="second")
        waiting.add_rows([{"x": 4}])
        waiting.remove_row(1)


def answers(layout: Layout, url: str) -> dict[str, object]:
    """What a catalog on ``url`` says: stats, usage, history, batches (with rows), the report's data."""
    with layout.catalog(database=url) as catalog:  # records nothing: it makes no call
        report = dataclasses.asdict(gather(catalog, since="2020-01-01"))
        for varies in ("generated_at", "database"):
            del report[varies]
        for timing in report["plugins"]:  # ns to s in floats by SQLite, in decimals by PostgreSQL
            timing["mean"], timing["longest"] = (float(f"{timing[key]:.12g}") for key in ("mean", "longest"))
        return {
            "report": report,
            "stats": catalog.stats(),
            "usage": catalog.usage(),
            "history": catalog.history(limit=1000),
            "batches": [
                {**batch.to_dict(), "row_list": [row.to_dict() for row in batch.rows()]}
                for batch in catalog.batches.list()
            ],
        }


def test_a_copy_answers_as_the_source_did_and_keeps_working(layout, engines):
    source, target = engines
    fill(layout, source.url("catalog"))
    before = answers(layout, source.url("catalog"))
    with connect(source.url("catalog")) as db, connect(target.url("catalog")) as copy:
        copied = copy_catalog_database(db, copy)
    assert list(copied) == [table for table, _ in CATALOG_TABLES]
    assert copied["taskcatalog_batches"] == 2 and copied["taskcatalog_batch_outcomes"] == 3
    assert copied["taskcatalog_plugin_keys"] == 1 and copied["taskcatalog_batch_rows"] == 4
    after = answers(layout, target.url("catalog"))
    assert after == before
    assert after["report"]["calls"] == 14 and after["report"]["plugins"] and after["report"]["batches"]
    assert [row["status"] for row in after["batches"][1]["row_list"]] == ["ok", "error", "ok"]
    assert after["batches"][1]["row_list"][2]["value_is_repr"] is True
    # The copy goes on: calls are recorded beside the copied ones, new batches get new ids,
    # the executed batch is still frozen there, and the pending one executes.
    with layout.catalog(database=target.url("catalog")) as catalog:
        catalog.call("echo", 1, Context("acme"), x=9)
        new = catalog.batches.create("echo", 1, "acme", rows=[{"x": 1}])
        assert new.id == 3
        first, second = catalog.batches.get(1), catalog.batches.get(2)
        assert first.status == "executed"
        with pytest.raises(BatchFrozen, match="^batch 1 is executed and frozen: it cannot take new rows$"):
            first.add_rows([{"x": 1}])
        assert second.execute() == {"pending": 0, "ok": 1, "error": 0, "skipped": 0}
    with layout.catalog(database=target.url("catalog")) as catalog:
        acme = [s for s in catalog.stats() if s.customer == "acme" and s.interface == "echo"]
        assert acme[0].calls == [s for s in before["stats"] if s.customer == "acme"][0].calls + 1  # the second batch has no customer
        assert len(catalog.history(limit=1000)) == len(before["history"]) + 2


def test_a_target_that_holds_rows_is_refused_and_left_as_it_was(layout, engines):
    source, target = engines
    fill(layout, source.url("catalog"))
    with layout.catalog(database=target.url("catalog")) as catalog:
        catalog.call("echo", 1, Context("acme"), x=1)
    before = answers(layout, target.url("catalog"))
    with connect(source.url("catalog")) as db, connect(target.url("catalog")) as copy:
        with pytest.raises(CatalogError) as raised:
            copy_catalog_database(db, copy)
        label = copy.label
    assert str(raised.value) == (
        f"cannot copy into {label}: its catalog tables already hold rows: taskcatalog_processes (1), "
        "taskcatalog_call_keys (1), taskcatalog_plugin_keys (1), taskcatalog_call_batches (1), "
        "taskcatalog_call_stats (1), taskcatalog_call_totals (1); copy into an empty database "
        "(or empty it first: taskcatalog db wipe --yes); no row was copied"
    )
    assert answers(layout, target.url("catalog")) == before


def test_a_source_that_is_no_catalog_database_is_refused(engines):
    source, target = engines
    with connect(source.url("plain")) as db, connect(target.url("catalog")) as copy:
        with pytest.raises(CatalogError) as raised:
            copy_catalog_database(db, copy)
        message = str(raised.value)
        assert message.startswith(f"cannot copy {db.label}: it is not an up-to-date catalog database (migrations not "
                                  "applied: 0001_telemetry (pending), ")
        assert message.endswith("); run 'taskcatalog db upgrade' on it first")
    assert target.tables("catalog") == []


def test_a_database_is_not_copied_onto_itself(layout, tmp_path):
    path = tmp_path / "catalog.sqlite3"
    fill(layout, str(path))
    with connect(path) as db, connect(path) as same:
        with pytest.raises(CatalogError, match=r"^cannot copy .*catalog\.sqlite3 onto itself$"):
            copy_catalog_database(db, same)


def label(url: str) -> str:
    with connect(url) as db:
        return db.label


def test_the_db_copy_command(tmp_path, engines):
    source, target = engines
    project = project_on(tmp_path, source.url("catalog"), {"echo": textwrap.dedent(ECHO)})
    called = tc("call", "echo", "1", "x=2", cwd=project)
    assert called.returncode == 0, called.stderr
    done = tc("db", "copy", target.url("catalog"), cwd=project)
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].startswith("copied ") and lines[0].endswith(f" to {label(target.url('catalog'))}")
    assert lines[1].split() == ["table", "rows"]
    assert lines[2].split() == ["taskcatalog_processes", "1"]
    again = tc("--json", "db", "copy", target.url("catalog"), cwd=project)
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.startswith("taskcatalog: error: CatalogError: cannot copy into ")
    assert again.stderr.endswith("no row was copied\n") and again.stderr.count("\n") == 1
    fresh = target.url("fresh")
    as_json = json.loads(tc("--json", "db", "copy", fresh, cwd=project).stdout)
    assert as_json["copied"]["taskcatalog_call_batches"] == 1 and as_json["target"] == label(fresh)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def project(request, tmp_path: Path, _postgres_databases) -> Iterator[tuple[Path, Engine]]:
    """A project (taskcatalog init) whose catalog database is on the engine, with the interface ``echo``."""
    engine = make_engine(request.param, tmp_path)
    try:
        yield project_on(tmp_path, engine.url("catalog"), {"echo": textwrap.dedent(ECHO)}), engine
    finally:
        engine.close()


def test_the_db_commands_work_the_same_on_either_engine(project):
    project, engine = project
    assert tc("call", "echo", "1", "x=2", cwd=project).returncode == 0
    status = json.loads(tc("--json", "db", "status", cwd=project).stdout)
    assert [(m["id"], m["state"]) for m in status["migrations"]] == [
        ("0001_telemetry", "applied"), ("0002_batches", "applied"), ("0003_batch_claims", "applied"),
        ("0004_call_totals", "applied"), ("0005_outcome_keys", "applied"), ("0006_packed_records", "applied"),
    ]
    upgraded = tc("db", "upgrade", cwd=project)
    assert upgraded.returncode == 0 and upgraded.stdout == f"{label(engine.url('catalog'))}: up to date\n"
    backed = tc("--json", "db", "backup", "saved.backup", cwd=project)
    assert backed.returncode == 0 and (project / "saved.backup").stat().st_size > 0
    assert tc("--json", "stats", cwd=project).returncode == 0
    refused = tc("db", "wipe", cwd=project)
    assert refused.returncode == 1
    assert refused.stderr == f"taskcatalog: error: refusing to wipe {label(engine.url('catalog'))} without --yes; nothing was changed\n"
    assert engine.query("SELECT count(*) FROM taskcatalog_call_totals", name="catalog") == [(1,)]
    wiped = json.loads(tc("--json", "db", "wipe", "--yes", cwd=project).stdout)
    assert wiped["deleted"]["taskcatalog_call_totals"] == 1
    assert engine.query("SELECT count(*) FROM taskcatalog_call_totals", name="catalog") == [(0,)]
