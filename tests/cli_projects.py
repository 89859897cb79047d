"""Projects the command line works on, in subprocesses: ``taskcatalog init`` with its catalog
database on a given engine (tests/db_engines.py), and ``tc`` to run the command there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def tc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m taskcatalog ARGS`` in ``cwd``, from this checkout, with no configuration from outside."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    environment.pop("TASKCATALOG_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "taskcatalog", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=120)


def project_on(folder: Path, database: str, interfaces: dict[str, str]) -> Path:
    """``taskcatalog init folder/proj`` with its catalog database at ``database`` and these interface files."""
    made = tc("init", "proj", cwd=folder)
    assert made.returncode == 0, made.stderr
    project = folder / "proj"
    config = project / "taskcatalog.toml"
    config.write_text(config.read_text().replace('database = "var/catalog.sqlite3"',
                                                 f"database = {json.dumps(database)}"))
    for name, source in interfaces.items():
        (project / "interfaces" / f"{name}.py").write_text(source)
    return project
