"""The sessions of docs/cli.md and docs/batches.md, replayed command by command in an empty folder.

Every ``$ taskcatalog ...`` line runs as a real subprocess; ``$ cd DIR``
changes folder; any other ``$`` line runs in bash (to write a rows file).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

import pytest

DOCS = ["cli.md", "batches.md"]


def sessions(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for every ``$ ...`` line of the ```console blocks, in order."""
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
    return steps


def _spaced(line: str) -> re.Pattern[str]:
    """``line`` as a pattern: ``...`` is any text, a run of spaces any run of spaces."""
    out = []
    for raw in re.split(r"( +|\.\.\.)", line):
        out.append(".*" if raw == "..." else r"\s+" if raw and not raw.strip() else re.escape(raw))
    return re.compile("".join(out))


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` fits ``expected``: a ``...`` line is any number of lines."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == "...":
        return any(matches(rest, actual[skip:]) for skip in range(len(actual) + 1))
    return bool(actual) and _spaced(head).fullmatch(actual[0].rstrip()) is not None and matches(rest, actual[1:])


@pytest.mark.parametrize("doc", DOCS)
def test_the_session_in_the_docs(doc: str, tmp_path: Path) -> None:
    steps = sessions((ROOT / "docs" / doc).read_text(encoding="utf-8"))
    assert len(steps) > 10
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("TASKCATALOG_CONFIG", None)
    cwd = tmp_path
    for command, expected in steps:
        words = shlex.split(command)
        if words[0] == "cd":
            cwd = cwd / words[1]
            continue
        program = [sys.executable, "-m", "taskcatalog", *words[1:]] if words[0] == "taskcatalog" else ["bash", "-c", command]
        process = subprocess.run(program, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        actual = process.stdout.splitlines() + process.stderr.splitlines()
        if process.returncode:
            actual.append(f"[exit {process.returncode}]")
        assert matches(expected, actual), f"$ {command}\nexpected:\n" + "\n".join(expected) + "\ngot:\n" + "\n".join(actual)


def test_the_matcher_can_fail() -> None:
    assert matches(["a  b", "..."], ["a b", "x", "y"])
    assert not matches(["a  b"], ["a c"])
    assert not matches(["x ... z"], ["x y"])
    assert matches(["x ... z"], ["x anything z"])
