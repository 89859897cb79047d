"""``taskcatalog batch create|add|list|show|execute|export`` on a project made by ``init``, in subprocesses."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from conftest import ROOT
from taskcatalog.cli.output import Progress

CHECK = '''\
import os
import time


def check_entrypoint_v1(ctx, n, label="x", wait=0):
    """Fails for a negative n; says which type n arrived as."""
    if float(wait):
        time.sleep(float(wait))  # a slow row: long enough for a progress line
    if int(n) < 0:
        raise ValueError(f"n={n} is negative")
    return {"n": n, "type": type(n).__name__, "label": label}
'''


def tc(*args: str, cwd: Path, **options) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    environment.pop("TASKCATALOG_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "taskcatalog", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=60, **options)


def ok(process: subprocess.CompletedProcess[str]) -> str:
    assert process.returncode == 0, process.stderr
    assert process.stderr == ""
    return process.stdout


def as_json(process: subprocess.CompletedProcess[str]):
    return json.loads(ok(process))


def one_line_error(process: subprocess.CompletedProcess[str], rc: int, message: str) -> None:
    assert process.returncode == rc, (process.stdout, process.stderr)
    assert process.stderr == f"taskcatalog: error: {message}\n"
    assert process.stdout == ""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    ok(tc("init", "proj", cwd=tmp_path))
    project = tmp_path / "proj"
    (project / "interfaces" / "check.py").write_text(CHECK)
    return project


def write(project: Path, name: str, content: str | bytes) -> str:
    path = project / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return name


def stored(project: Path) -> list[tuple[int, int]]:
    """(batch id, rows) of every batch in the project's catalog database, read with sqlite3."""
    path = project / "var" / "catalog.sqlite3"
    if not path.exists():
        return []
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(
            "SELECT b.id, count(r.number) FROM taskcatalog_batches AS b"
            " LEFT JOIN taskcatalog_batch_rows AS r ON r.batch = b.id GROUP BY b.id ORDER BY b.id"
        ).fetchall()


# -- create, add, list, show --------------------------------------------------------------


def test_csv_values_are_strings_json_keeps_types(project):
    csv_file = write(project, "rows.csv", "n,label\n1,a\n\n2,b\n")
    json_file = write(project, "rows.json", '[{"n": 1, "label": "a"}, {"n": 2.5}]')
    jsonl_file = write(project, "rows.jsonl", '{"n": 1}\n\n{"n": 3, "label": "c"}\r\n')
    created = [as_json(tc("batch", "create", "check", "1", "--customer", "example_customer", "--rows", name,
                          "--description", name, "--json", cwd=project)) for name in (csv_file, json_file, jsonl_file)]
    assert [(b["id"], b["customer"], b["description"], b["status"], b["rows"]["pending"]) for b in created] == [
        (1, "example_customer", "rows.csv", "pending", 2), (2, "example_customer", "rows.json", "pending", 2),
        (3, "example_customer", "rows.jsonl", "pending", 2),
    ]
    shown = [as_json(tc("batch", "show", str(b["id"]), "--json", cwd=project))["row_list"] for b in created]
    assert [[r["args"] for r in rows] for rows in shown] == [
        [{"n": "1", "label": "a"}, {"n": "2", "label": "b"}],
        [{"n": 1, "label": "a"}, {"n": 2.5}],
        [{"n": 1}, {"n": 3, "label": "c"}],
    ]
    # key=value words: the value read as JSON when it parses, else kept as a string
    assert ok(tc("batch", "create", "check", "1", "n=4", "label=d", cwd=project)) == (
        "created batch 4: check v1 for no customer, pending (1 pending)\n"
    )
    assert as_json(tc("batch", "show", "4", "--json", cwd=project))["row_list"][0]["args"] == {"n": 4, "label": "d"}
    ok(tc("batch", "execute", "1", cwd=project))
    values = [r["value"] for r in as_json(tc("batch", "show", "1", "--json", cwd=project))["row_list"]]
    assert values == [{"n": "1", "type": "str", "label": "a"}, {"n": "2", "type": "str", "label": "b"}]


def test_add_list_show(project):
    ok(tc("batch", "create", "check", "1", "--customer", "example_customer", "n=1", "--description", "first",
          cwd=project))
    assert ok(tc("batch", "add", "1", "n=2", "label=two", cwd=project)) == (
        "added row(s) 2-2 to batch 1: check v1 for example_customer, pending (2 pending)\n"
    )
    write(project, "more.jsonl", '{"n": 3}\n{"n": 4}\n')
    assert as_json(tc("batch", "add", "1", "--rows", "more.jsonl", "--json", cwd=project)) == {"batch": 1, "added": [3, 4]}
    ok(tc("batch", "create", "check", "1", "n=9", cwd=project))
    ok(tc("batch", "execute", "2", cwd=project))

    listing = ok(tc("batch", "list", cwd=project)).splitlines()
    assert re.split(r"\s+", listing[0]) == ["id", "interface", "version", "customer", "status", "rows", "ok", "error",
                                            "skipped", "pending", "created", "description"]
    assert listing[1].split()[:10] == ["2", "check", "1", "-", "executed", "1", "1", "0", "0", "0"]
    assert listing[2].split()[:10] == ["1", "check", "1", "example_customer", "pending", "4", "0", "0", "0", "4"]
    assert listing[2].endswith("  first") and len(listing) == 3
    assert [b["id"] for b in as_json(tc("batch", "list", "--json", cwd=project))] == [2, 1]
    assert [b["id"] for b in as_json(tc("batch", "list", "--status", "pending", "--json", cwd=project))] == [1]
    assert ok(tc("batch", "list", "--status", "executing", cwd=project)) == "no batches\n"

    shown = ok(tc("batch", "show", "1", cwd=project)).splitlines()
    assert shown[0] == "batch 1: check v1 for example_customer, pending (4 pending)"
    assert re.fullmatch(r"created \S+ by \S+; first", shown[1])
    assert [re.split(r"\s+", line.strip()) for line in shown[2:]] == [
        ["row", "status", "args", "value", "error"],
        ["1", "pending", '{"n":', "1}", "-", "-"],
        ["2", "pending", '{"n":', "2,", '"label":', '"two"}', "-", "-"],
        ["3", "pending", '{"n":', "3}", "-", "-"],
        ["4", "pending", '{"n":', "4}", "-", "-"],
    ]
    page = as_json(tc("batch", "show", "1", "--offset", "1", "--limit", "2", "--json", cwd=project))
    assert [r["number"] for r in page["row_list"]] == [2, 3] and page["rows"]["pending"] == 4
    assert page["description"] == "first" and page["status"] == "pending"
    assert as_json(tc("batch", "show", "1", "--status", "ok", "--json", cwd=project))["row_list"] == []


# -- execute, export ----------------------------------------------------------------------


def test_execute_exits_1_when_a_row_failed_and_the_batch_goes_on(project):
    ok(tc("batch", "create", "check", "1", "--customer", "example_customer", "--rows",
          write(project, "rows.csv", "n\n1\n-2\n3\n"), cwd=project))
    process = tc("batch", "execute", "1", cwd=project)
    # A quick batch on a pipe: no progress line (they come every few seconds off a terminal).
    assert (process.returncode, process.stdout, process.stderr) == (
        1, "batch 1: check v1 for example_customer, executed (2 ok, 1 error)\n", ""
    )
    rows = as_json(tc("batch", "show", "1", "--json", cwd=project))["row_list"]
    assert [(r["status"], r["error_type"], r["error"]) for r in rows] == [
        ("ok", None, None), ("error", "ValueError", "n=-2 is negative"), ("ok", None, None),
    ]
    shown = ok(tc("batch", "show", "1", "--status", "error", cwd=project)).splitlines()
    assert shown[-1].split("  ")[-1] == "ValueError: n=-2 is negative"
    ok(tc("batch", "create", "check", "1", "n=5", cwd=project))
    process = tc("batch", "execute", "2", "--json", cwd=project)
    assert process.returncode == 0 and process.stderr == ""
    header = json.loads(process.stdout)
    assert (header["id"], header["status"], header["rows"]["ok"], header["executed_by"]) == (2, "executed", 1,
                                                                                             header["created_by"])


def test_export_csv_and_json(project):
    ok(tc("batch", "create", "check", "1", "--rows", write(project, "rows.json", '[{"n": 1, "label": "a,\\"b\\"\\nc"}, '
                                                            '{"n": -1}]'), cwd=project))
    assert tc("batch", "execute", "1", cwd=project).returncode == 1
    text = ok(tc("batch", "export", "1", "--format", "csv", cwd=project))
    records = list(csv.DictReader(io.StringIO(text)))
    assert list(records[0]) == ["number", "status", "args", "value", "value_is_repr", "error_type", "error",
                                "call_id", "duration", "finished_at"]
    assert [(r["number"], r["status"], json.loads(r["args"]), json.loads(r["value"]), r["error_type"], r["error"])
            for r in records] == [
        ("1", "ok", {"n": 1, "label": 'a,"b"\nc'}, {"n": 1, "type": "int", "label": 'a,"b"\nc'}, "", ""),
        ("2", "error", {"n": -1}, None, "ValueError", "n=-1 is negative"),
    ]
    exported = as_json(tc("batch", "export", "1", cwd=project))
    shown = as_json(tc("batch", "show", "1", "--json", cwd=project))
    assert exported == shown and [r["status"] for r in exported["row_list"]] == ["ok", "error"]
    assert ok(tc("batch", "export", "1", "--format", "csv", "--out", "out.csv", cwd=project)) == (
        "wrote 2 row(s) of batch 1 to out.csv\n"
    )
    assert (project / "out.csv").read_text() == text
    assert as_json(tc("batch", "export", "1", "--out", "out.json", "--json", cwd=project)) == {
        "batch": 1, "rows": 2, "format": "json", "out": "out.json"
    }
    assert json.loads((project / "out.json").read_text()) == exported


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "content", "message"), [
    ("short.csv", "n,label\n1,a\n2\n", "short.csv:3: 1 value(s), but the header has 2 column(s)"),
    ("quote.csv", 'n\n1\n"2\n', "quote.csv:3: not valid CSV: unexpected end of data"),
    ("stray.csv", 'n,label\n1,"a"b\n', "stray.csv:2: not valid CSV: ',' expected after '\"'"),
    ("twice.csv", "n,n\n1,2\n", "twice.csv:1: the header needs distinct, non-empty column names: ['n', 'n']"),
    ("latin.csv", b"n,label\n1,a\n2,\xe9\n", "latin.csv:3: not UTF-8 text (invalid continuation byte at byte 14)"),
    ("colon.json", '[{"n": 1},\n {"n" 2}\n]', "colon.json:2: not valid JSON: Expecting ':' delimiter (column 7)"),
    ("object.json", '{"n": 1}', "object.json: a .json rows file holds a list of objects, not a dict"),
    ("item.json", '[{"n": 1}, 2]', "item.json: item 2 of the list is a int, not an object"),
    ("cut.jsonl", '{"n": 1}\n\n{"n": \n', "cut.jsonl:3: not valid JSON: Expecting value (column 7)"),
    ("list.jsonl", '{"n": 1}\n[1]\n', "list.jsonl:2: a line of a .jsonl file is one object, not a list"),
])
def test_a_malformed_rows_file_is_refused_naming_the_line(project, name, content, message):
    write(project, name, content)
    one_line_error(tc("batch", "create", "check", "1", "--rows", name, cwd=project), 1, message)
    assert stored(project) == []


def test_add_refuses_a_malformed_file_and_keeps_the_rows(project):
    ok(tc("batch", "create", "check", "1", "n=1", cwd=project))
    write(project, "more.jsonl", '{"n": 2}\n{"n": 3,\n')
    one_line_error(tc("batch", "add", "1", "--rows", "more.jsonl", cwd=project), 1,
                   "more.jsonl:2: not valid JSON: Expecting property name enclosed in double quotes (column 9)")
    assert stored(project) == [(1, 1)]


def test_rows_files_from_other_programs(project):
    """A CSV that starts with a byte order mark (spreadsheets write one) and JSON strings holding
    line separators (U+2028, U+0085: valid unescaped in JSON) are rows like any other."""
    write(project, "excel.csv", "\ufeffn,label\r\n1,a\r\n".encode())
    write(project, "text.jsonl", '{"n": 1, "label": "a\u2028b\x85c"}\n'.encode())
    for name in ("excel.csv", "text.jsonl"):
        ok(tc("batch", "create", "check", "1", "--rows", name, cwd=project))
    rows = [as_json(tc("batch", "show", str(i), "--json", cwd=project))["row_list"][0]["args"] for i in (1, 2)]
    assert rows == [{"n": "1", "label": "a"}, {"n": 1, "label": "a\u2028b\x85c"}]


def test_rows_with_unknown_or_missing_keys_store_nothing(project):
    write(project, "rows.csv", "n,label\n1,a\n2,b\n")
    write(project, "bad.csv", "n,lable\n3,c\n")
    ok(tc("batch", "create", "check", "1", "--rows", "rows.csv", cwd=project))
    one_line_error(tc("batch", "add", "1", "--rows", "bad.csv", cwd=project), 1,
                   "ArgumentError: row 3 of check v1: unexpected keyword argument(s) 'lable'; it accepts: n, label, "
                   "wait; nothing was stored")
    one_line_error(tc("batch", "create", "check", "1", "label=a", cwd=project), 1,
                   "ArgumentError: row 1 of check v1: no value for required argument(s) 'n'; it accepts: n, label, "
                   "wait; nothing was stored")
    assert stored(project) == [(1, 2)]


def test_usage_errors_exit_2(project):
    write(project, "rows.csv", "n\n1\n")
    write(project, "rows.txt", "n\n1\n")
    ok(tc("batch", "create", "check", "1", "n=1", cwd=project))
    for args, message in [
        (("batch", "create", "check", "1", "--rows", "rows.csv", "n=1"),
         "give rows with --rows FILE or as key=value words, not both"),
        (("batch", "create", "check", "1", "--rows", "rows.txt"), "--rows takes a .csv, .json or .jsonl file, not 'rows.txt'"),
        (("batch", "create", "check", "1", "1n=2"), "expected key=value with key a Python identifier, got '1n=2'"),
        (("batch", "add", "1"), "no rows given: --rows FILE or key=value words"),
    ]:
        one_line_error(tc(*args, cwd=project), 2, message)
    one_line_error(tc("batch", "create", "check", "1", "--rows", "gone.csv", cwd=project), 1,
                   "cannot read gone.csv: No such file or directory")
    process = tc("batch", "list", "--status", "done", cwd=project)
    assert process.returncode == 2 and "invalid choice: 'done'" in process.stderr
    assert stored(project) == [(1, 1)]


def test_a_batch_that_does_not_exist(project):
    label = project / "var" / "catalog.sqlite3"
    for command in ("show", "execute", "export"):
        one_line_error(tc("batch", command, "7", cwd=project), 1, f"BatchNotFound: no batch 7 in {label}")
    one_line_error(tc("batch", "add", "7", "n=1", cwd=project), 1, f"BatchNotFound: no batch 7 in {label}")
    one_line_error(tc("batch", "create", "check", "1", "--depends-on", "7", "n=1", cwd=project), 1,
                   "BatchNotFound: batch 1 cannot depend on batch 7: there is no batch 7")
    assert stored(project) == []


def test_an_executed_batch_is_frozen_and_dependencies_wait(project):
    ok(tc("batch", "create", "check", "1", "n=1", cwd=project))
    ok(tc("batch", "create", "check", "1", "n=2", "--depends-on", "1", cwd=project))
    one_line_error(tc("batch", "execute", "2", cwd=project), 1,
                   "batch 2 depends on batches not executed yet: 1 (pending)")
    assert as_json(tc("batch", "show", "2", "--json", cwd=project))["depends_on"] == [1]
    ok(tc("batch", "execute", "1", cwd=project))
    one_line_error(tc("batch", "add", "1", "n=3", cwd=project), 1,
                   "BatchFrozen: batch 1 is executed and frozen: it cannot take new rows")
    one_line_error(tc("batch", "execute", "1", cwd=project), 1, "batch 1 is already executed (and frozen)")
    assert ok(tc("batch", "execute", "2", cwd=project)) == "batch 2: check v1 for no customer, executed (1 ok)\n"


def test_an_interface_broken_after_create_is_a_clear_error(project):
    write(project, "rows.csv", "n\n1\n2\n")
    ok(tc("batch", "create", "check", "1", "--rows", "rows.csv", cwd=project))
    path = project / "interfaces" / "check.py"
    path.write_text("def check_entrypoint_v1(ctx, n):\n    return [\n")
    one_line_error(tc("batch", "execute", "1", cwd=project), 1,
                   f"batch 1 cannot run check v1: cannot load interface 'check' from {path}:2: "
                   f"SyntaxError: '[' was never closed")
    path.unlink()
    one_line_error(tc("batch", "execute", "1", cwd=project), 1,
                   f"batch 1 cannot run check v1: no interface 'check' in the catalog (interfaces: greeting; "
                   f"folders: {project / 'interfaces'})")
    shown = as_json(tc("batch", "show", "1", "--json", cwd=project))
    assert shown["status"] == "pending"
    assert [(r["number"], r["args"], r["status"]) for r in shown["row_list"]] == [(1, {"n": "1"}, "pending"),
                                                                                 (2, {"n": "2"}, "pending")]


# -- progress ----------------------------------------------------------------------------


def on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str, bytes]:
    """Run the command with stderr on a pseudo-terminal: (exit status, stdout, what the terminal got)."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    environment.pop("TASKCATALOG_CONFIG", None)
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "taskcatalog", *args], cwd=cwd, env=environment,
                                   stdout=subprocess.PIPE, stderr=terminal, text=True)
        os.close(terminal)
        terminal = -1
        shown = b""
        while True:  # read until the child closes the terminal (EIO on Linux): nothing is left in it
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        stdout, _ = process.communicate(timeout=60)
        return process.returncode, stdout, shown
    finally:
        os.close(controller)
        if terminal != -1:
            os.close(terminal)


def test_a_progress_line_on_a_terminal(project):
    # Row 2 takes 0.3 s, longer than the terminal's 0.1 s between redraws: a line is shown after
    # it, and the final state closes that line.
    write(project, "rows.jsonl", '{"n": 1}\n{"n": -2, "wait": 0.3}\n{"n": 3}\n')
    ok(tc("batch", "create", "check", "1", "--rows", "rows.jsonl", cwd=project))
    status, stdout, shown = on_a_terminal(["batch", "execute", "1"], project)
    assert (status, stdout) == (1, "batch 1: check v1 for no customer, executed (2 ok, 1 error)\n")
    text = shown.decode()
    assert re.fullmatch(
        r"\rbatch 1: 2/3 \(67%\), \d+/s, 1 error\(s\), ETA \d+s\rbatch 1: 3/3 \(100%\), \d+/s, 1 error\(s\), ETA 0s\r\n",
        text,
    ), text


def test_progress_plain_lines_off_a_terminal():
    stream = io.StringIO()
    progress = Progress(4, "batch 9", stream, every=0.0)
    for done in (1, 2, 3, 4):
        progress.update(done, errors=done // 2)
    progress.update(4, errors=2, final=True)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5
    assert [re.sub(r"\d+/s|ETA \d+s", "R", line) for line in lines] == [
        "batch 9: 1/4 (25%), R, 0 error(s), R", "batch 9: 2/4 (50%), R, 1 error(s), R",
        "batch 9: 3/4 (75%), R, 1 error(s), R", "batch 9: 4/4 (100%), R, 2 error(s), R",
        "batch 9: 4/4 (100%), R, 2 error(s), R",
    ]
    quiet = io.StringIO()
    slow = Progress(4, "batch 9", quiet, every=3600.0)
    slow.update(1)
    slow.update(4, final=True)
    assert quiet.getvalue() == ""  # short work shows no line at all


HOLD = '''\
import os
import time


def hold_entrypoint_v1(ctx, n, hold=False, wait=0):
    if hold:  # tell the test this row runs, then wait for it to open the gate
        open(os.path.join(os.path.dirname(__file__), "..", "holding"), "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(os.path.dirname(__file__), "..", "gate")):
            if time.monotonic() > deadline:
                raise TimeoutError("the test never opened the gate")
            time.sleep(0.002)
    if wait:
        time.sleep(wait)
    return n
'''


def test_the_rate_of_a_resumed_batch_counts_only_this_run(project):
    (project / "interfaces" / "hold.py").write_text(HOLD)
    rows = [{"n": n} for n in range(1, 1001)] + [{"n": 1001, "hold": True}, {"n": 1002, "wait": 0.3}, {"n": 1003}]
    write(project, "rows.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    ok(tc("batch", "create", "hold", "1", "--rows", "rows.jsonl", cwd=project))
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    environment.pop("TASKCATALOG_CONFIG", None)
    child = subprocess.Popen([sys.executable, "-m", "taskcatalog", "batch", "execute", "1"], cwd=project,
                             env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (project / "holding").exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        child.kill()
        _, stderr = child.communicate()
    assert child.returncode == -9, stderr
    assert stored(project) == [(1, 1003)]
    (project / "gate").touch()
    # Resumed: rows 1001 to 1003, in whatever order the killed executor's claims leave them; the first
    # progress line comes after row 1002 (0.3 s). At most two rows in at least 0.3 s: this run's rate
    # is at most 7 rows/s (counting the 1,000 rows of the first run as its own would make it thousands).
    status, stdout, shown = on_a_terminal(["batch", "execute", "1"], project)
    assert (status, stdout) == (0, "batch 1: hold v1 for no customer, executed (1003 ok)\n")
    first = re.match(r"\rbatch 1: 100[12]/1003 \(100%\), (\d+)/s, 0 error\(s\), ETA \d+s\r", shown.decode())
    assert first is not None, shown
    assert int(first.group(1)) <= 7
