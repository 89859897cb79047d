"""``taskcatalog batch execute ID --workers N``: N worker processes share one batch, on either engine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_projects import project_on, tc
from conftest import ROOT
from db_engines import Engine, _postgres_databases, make_engine  # noqa: F401 - the fixture is used by name

# Each run of a row appends "pid number" to ran.log (one write, O_APPEND: lines never mix).
# Row 5 kills its worker the first time it runs (a worker dying in the middle of a row).
WORK = '''
import os
import signal
import time

LOG = os.path.join(os.path.dirname(__file__), "..", "ran.log")


def work_entrypoint_v1(ctx, n: int, die: bool = False, always: bool = False):
    descriptor = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(descriptor, f"{os.getpid()} {n}\\n".encode())
    finally:
        os.close(descriptor)
    marker = os.path.join(os.path.dirname(LOG), "died")
    if always or (die and not os.path.exists(marker)):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.002)
    return n * 2
'''


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def project(request, tmp_path: Path, _postgres_databases) -> Iterator[Path]:
    """A project (taskcatalog init) whose catalog database is on the engine, with the interface ``work``."""
    engine = make_engine(request.param, tmp_path)
    try:
        yield project_on(tmp_path, engine.url("catalog"), {"work": WORK})
    finally:
        engine.close()


def create(project: Path, rows: list[dict[str, object]]) -> None:
    path = project / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    made = tc("batch", "create", "work", "1", "--rows", str(path), cwd=project)
    assert made.returncode == 0, made.stderr


def runs(project: Path) -> list[tuple[int, int]]:
    """(pid, row number) of every run of a row, in the order they started."""
    lines = (project / "ran.log").read_text().splitlines()
    return [(int(pid), int(n)) for pid, n in (line.split() for line in lines)]


def test_workers_share_the_rows_and_run_each_once(project):
    create(project, [{"n": n} for n in range(1, 121)])
    process = subprocess.Popen([sys.executable, "-m", "taskcatalog", "--json", "batch", "execute", "1", "--workers", "3"],
                               cwd=project, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0 and err == ""
    shown = json.loads(out)
    assert shown["status"] == "executed" and shown["rows"] == {"pending": 0, "ok": 120, "error": 0, "skipped": 0}
    ran = runs(project)
    assert sorted(n for _, n in ran) == list(range(1, 121))  # every row once
    assert process.pid not in {pid for pid, _ in ran}  # the workers ran them, not the command itself


def test_a_worker_that_dies_mid_row_leaves_its_row_to_the_others(project):
    create(project, [{"n": n, "die": n == 5} for n in range(1, 41)])
    done = tc("batch", "execute", "1", "--workers", "2", cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "batch 1: work v1 for no customer, executed (40 ok)\n"
    assert done.stderr.startswith("taskcatalog: warning: batch 1: worker ")
    assert done.stderr.endswith(" (exit code -9) failed; the other workers ran its rows\n")
    counted = Counter(n for _, n in runs(project))
    assert counted[5] == 2  # the run that died, and the one that finished it
    assert all(counted[n] == 1 for n in range(1, 41) if n != 5)  # no finished row ran again
    shown = json.loads(tc("--json", "batch", "show", "1", cwd=project).stdout)
    assert [row["value"] for row in shown["row_list"]] == [n * 2 for n in range(1, 41)]


def test_workers_must_be_a_small_positive_number(project):
    create(project, [{"n": 1}])
    for bad in ("0", "-1", "x", "65"):
        refused = tc("batch", "execute", "1", "--workers", bad, cwd=project)
        assert refused.returncode == 2 and refused.stdout == ""
        assert f"argument --workers: a number of worker processes from 1 to 64, not '{bad}'" in refused.stderr
    assert not (project / "ran.log").exists()


def test_workers_that_all_die_leave_the_rows_pending_and_say_to_run_again(project):
    create(project, [{"n": n, "always": n == 3} for n in range(1, 11)])  # row 3 kills whoever runs it
    done = tc("batch", "execute", "1", "--workers", "2", cwd=project)
    assert done.returncode == 1 and done.stdout == ""
    assert re.fullmatch(
        r"taskcatalog: error: batch 1: worker 1 \(exit code -9\), worker 2 \(exit code -9\) failed; "
        r"\d+ row\(s\) still pending: run 'taskcatalog batch execute 1' again to resume\n",
        done.stderr,
    ), done.stderr
    shown = json.loads(tc("--json", "batch", "show", "1", cwd=project).stdout)
    assert shown["status"] == "executing" and shown["rows"]["pending"] >= 1
    assert [row["number"] for row in shown["row_list"] if row["status"] == "pending"][0] == 3
    counted = Counter(n for _, n in runs(project))
    assert counted[3] == 2 and all(count == 1 for n, count in counted.items() if n != 3)  # no finished row again
