"""The command line on a real project made by ``init``: scaffolding, configuration, conventions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT


def tc(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    environment.pop("TASKCATALOG_CONFIG", None) if env is None or "TASKCATALOG_CONFIG" not in env else None
    return subprocess.run([sys.executable, "-m", "taskcatalog", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert tc("init", "proj", cwd=tmp_path).returncode == 0
    return tmp_path / "proj"


def one_line_error(process: subprocess.CompletedProcess[str], rc: int, message: str) -> None:
    assert process.returncode == rc, process.stderr
    assert process.stderr.startswith(f"taskcatalog: error: {message}"), process.stderr
    assert process.stderr.count("\n") == 1 and "Traceback" not in process.stderr


def test_init_makes_a_project_that_checks_clean_and_answers(project: Path) -> None:
    assert tc("check", cwd=project).stdout == "no problems\n"
    assert tc("call", "greeting", "1", "--customer", "example_customer", "name=Ann", cwd=project).stdout == '"HELLO, ANN!"\n'
    assert sorted(p.name for p in project.iterdir()) == [".gitignore", "README.md", "interfaces", "plugins", "taskcatalog.toml", "var"]


def test_init_refuses_a_non_empty_folder_or_a_file(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    one_line_error(tc("init", "full", cwd=tmp_path), 1, f"{tmp_path / 'full'} is not empty")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    (tmp_path / "afile").write_text("")
    one_line_error(tc("init", "afile", cwd=tmp_path), 1, f"{tmp_path / 'afile'} exists and is not a folder")
    (tmp_path / "empty").mkdir()
    assert tc("init", "empty", cwd=tmp_path).returncode == 0


def test_new_never_overwrites_and_checks_names(project: Path) -> None:
    one_line_error(tc("new", "interface", "greeting", cwd=project), 1, "interface 'greeting' already exists")
    one_line_error(tc("new", "interface", "1bad", cwd=project), 1, "InvalidName: invalid interface name '1bad'")
    one_line_error(tc("new", "plugin", "example_customer", "greeting", "--slot", "decorate", cwd=project), 1,
                   f"{project / 'plugins' / 'example_customer' / 'greeting.py'} already exists; refusing to overwrite it")
    for customer in ("../x", "a/b", ".."):
        one_line_error(tc("new", "plugin", customer, "greeting", "--slot", "decorate", cwd=project), 1,
                       f"InvalidName: invalid customer name {customer!r}")
    one_line_error(tc("new", "plugin", "acme", "greeting", "--slot", "nope", cwd=project), 1,
                   "any version of 'greeting' declares no slot 'nope' (slots: 'decorate')")
    one_line_error(tc("new", "plugin", "acme", "greeting", "--slot", "decorate", "--version", "9", cwd=project), 1,
                   "interface 'greeting' has no version 9 (versions: 1)")
    one_line_error(tc("new", "plugin", "acme", "greeting", "--slot", "decorate", "--version", "x", cwd=project), 2,
                   "--version must be a positive integer, not 'x'")
    assert not (project / "plugins" / "acme").exists()


def test_new_plugin_stub_fits_its_slot(project: Path) -> None:
    assert tc("new", "plugin", "acme", "greeting", "--slot", "decorate", "--version", "1", cwd=project).returncode == 0
    text = (project / "plugins" / "acme" / "greeting.py").read_text()
    assert "@plugin_config(version=1, slot='decorate')\ndef decorate(ctx, text: str, **kwargs) -> str:" in text
    assert tc("check", cwd=project).returncode == 0


def test_new_version_copies_the_latest_without_its_deprecation(project: Path) -> None:
    path = project / "interfaces" / "greeting.py"
    path.write_text(path.read_text().replace(
        "from taskcatalog import slot", "from taskcatalog import deprecated, slot"
    ).replace('@slot("decorate"', '@deprecated("use v2", sunset="2999-01-01")\n@slot("decorate"'))
    process = tc("new", "version", "greeting", cwd=project)
    assert process.stdout == "added greeting_entrypoint_v2 to interfaces/greeting.py (a copy of v1): edit it\n"
    described = json.loads(tc("--json", "describe", "greeting", cwd=project).stdout)
    v1, v2 = described["versions"]
    assert v1["deprecated"]["message"] == "use v2" and v2["deprecated"] is None
    assert v2["slots"][0]["slot"] == "decorate"
    # example_customer's plugin says version=1: the new version runs without it until it says otherwise.
    assert tc("call", "greeting", "2", "--customer", "example_customer", "name=Ann", cwd=project).stdout == '"Hello, Ann"\n'
    assert tc("new", "version", "greeting", cwd=project).returncode == 0
    assert json.loads(tc("--json", "list", cwd=project).stdout)[0]["versions"] == [1, 2, 3]


def test_check_formats(project: Path) -> None:
    (project / "plugins" / "acme").mkdir()
    (project / "plugins" / "acme" / "greeting.py").write_text("x = 1\ndef broken(:\n")
    process = tc("check", cwd=project)
    assert process.returncode == 1
    assert process.stdout.endswith("1 problem(s)\n") and "acme/greeting.py:2: import: cannot load" in process.stdout
    github = tc("check", "--format", "github", cwd=project)
    assert github.returncode == 1
    path = str(project / "plugins" / "acme" / "greeting.py").replace(":", "%3A").replace(",", "%2C")
    assert github.stdout.startswith(f"::error file={path},line=2,title=import::cannot load customer 'acme'")
    assert github.stdout.count("\n") == 1
    problems = json.loads(tc("--json", "check", cwd=project).stdout)
    assert [(p["kind"], p["line"], p["customer"], p["distribution"]) for p in problems] == [("import", 2, "acme", None)]
    assert tc("check", "--customer", "example_customer", cwd=project).returncode == 0


def test_configuration_is_found_as_designed(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    one_line_error(tc("list", cwd=elsewhere), 2, "no catalog here")
    config = str(project / "taskcatalog.toml")
    assert "greeting" in tc("--config", config, "list", cwd=elsewhere).stdout
    assert "greeting" in tc("list", "--config", config, cwd=elsewhere).stdout
    assert "greeting" in tc("list", cwd=elsewhere, env={"TASKCATALOG_CONFIG": config}).stdout
    one_line_error(tc("--config", str(tmp_path / "missing.toml"), "list", cwd=elsewhere), 1, "ConfigError: ")
    (tmp_path / "bad.toml").write_text("[catalog\n")
    one_line_error(tc("--config", str(tmp_path / "bad.toml"), "list", cwd=elsewhere), 1, "ConfigError: ")
    (tmp_path / "typo.toml").write_text('[catalog]\ninterfaces = ["x"]\nreload_intervall = 1\n')
    process = tc("--config", str(tmp_path / "typo.toml"), "list", cwd=elsewhere)
    one_line_error(process, 1, "ConfigError: ")
    assert "reload_interval" in process.stderr


def test_arguments_as_json(project: Path) -> None:
    ok = tc("call", "greeting", "1", "--args-json", '{"name": "Jo"}', cwd=project)
    assert ok.stdout == '"Hello, Jo"\n'
    assert tc("call", "greeting", "1", "--args-json", '{"name": "Jo"}', "name=Al", cwd=project).stdout == '"Hello, Al"\n'
    one_line_error(tc("call", "greeting", "1", "--args-json", "{nope", cwd=project), 2, "--args-json is not valid JSON")
    one_line_error(tc("call", "greeting", "1", "--args-json", "[1]", cwd=project), 2, "--args-json must be a JSON object, not list")


def test_debug_shows_the_traceback(project: Path) -> None:
    process = tc("--debug", "describe", "nope", cwd=project)
    assert process.returncode == 1
    assert "Traceback (most recent call last)" in process.stderr
    assert process.stderr.rstrip().endswith("taskcatalog: error: InterfaceNotFound: no interface 'nope' in the catalog "
                                            f"(interfaces: greeting; folders: {project / 'interfaces'})")


@pytest.mark.parametrize(
    "command",
    [["init"], ["new"], ["new", "interface"], ["new", "version"], ["new", "plugin"], ["list"], ["describe"], ["call"],
     ["check"], ["stats"], ["usage"], ["history"], ["db"], ["db", "upgrade"], ["db", "status"], ["db", "backup"],
     ["db", "wipe"]],
)
def test_every_command_has_help_with_an_example(command: list[str], tmp_path: Path) -> None:
    process = tc(*command, "--help", cwd=tmp_path)
    assert process.returncode == 0
    assert process.stdout.startswith(f"usage: taskcatalog {' '.join(command)}")
    assert "\nexample:\n  taskcatalog " in process.stdout


def test_stats_without_a_database_says_so(tmp_path: Path) -> None:
    process = tc("stats", cwd=ROOT)
    assert process.returncode == 0
    assert process.stdout == "no calls recorded\n"
    assert process.stderr.startswith("taskcatalog: note: this catalog has no database")
    assert json.loads(tc("--json", "usage", cwd=ROOT).stdout) == []


def test_db_commands_on_a_customer_database(project: Path) -> None:
    migrations = project / "plugins" / "example_customer" / "migrations"
    migrations.mkdir()
    (migrations / "0001_notes.sql").write_text("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT);\n")
    status = tc("db", "status", "--customer", "example_customer", cwd=project)
    assert status.returncode == 1 and "example_customer  0001_notes  pending" in status.stdout
    upgrade = json.loads(tc("--json", "db", "upgrade", "--customer", "example_customer", cwd=project).stdout)
    assert upgrade["applied"] == ["0001_notes"] and upgrade["database"].endswith("example_customer.sqlite3")
    assert tc("db", "status", "--customer", "example_customer", cwd=project).returncode == 0
    wiped = json.loads(tc("--json", "db", "wipe", "--yes", "--customer", "example_customer", cwd=project).stdout)
    assert wiped["deleted"] == {"notes": 0}
    one_line_error(tc("db", "status", "--customer", "../x", cwd=project), 1, "InvalidName: invalid customer name '../x'")


# -- installed packages ----------------------------------------------------------------------------


def _wheel(folder: Path, name: str, files: dict[str, str], entry_points: str) -> Path:
    """A wheel built by hand (a zip with a dist-info folder): what pip installs, without a build step."""
    dist_info = f"{name}-1.0.dist-info"
    contents = {
        **files,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist_info}/entry_points.txt": entry_points,
    }
    contents[f"{dist_info}/RECORD"] = "".join(f"{path},,\n" for path in [*contents, f"{dist_info}/RECORD"])
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in contents.items():
            archive.writestr(member, text)
    return path


def test_interfaces_and_plugins_from_installed_packages(project: Path, tmp_path: Path) -> None:
    good = _wheel(tmp_path, "acme_catalog", {
        "acme_catalog/__init__.py": "",
        "acme_catalog/interfaces/__init__.py": "",
        "acme_catalog/interfaces/billing.py": "def billing_entrypoint_v1(ctx, amount: int):\n    return amount * 2\n",
        "acme_catalog/plugins/__init__.py": "",
        "acme_catalog/plugins/acme/greeting.py": (
            "from taskcatalog import plugin_config\n\n@plugin_config(slot='decorate')\n"
            "def polite(ctx, text: str) -> str:\n    return text + ', welcome'\n"
        ),
    }, "[taskcatalog.interfaces]\nbilling = acme_catalog.interfaces\n[taskcatalog.plugins]\nacme = acme_catalog.plugins\n")
    broken = _wheel(tmp_path, "broken_catalog", {
        "broken_catalog/__init__.py": "",
        "broken_catalog/plugins/__init__.py": "",
        "broken_catalog/plugins/zed/greeting.py": "def broken(:\n",
    }, "[taskcatalog.plugins]\nzed = broken_catalog.plugins\nghost = broken_catalog.nowhere\n")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-index", "--disable-pip-version-check",
                    str(good), str(broken)], check=True, timeout=120)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        env.pop("TASKCATALOG_CONFIG", None)
        return subprocess.run([str(python), "-m", "taskcatalog", *args], cwd=project, env=env,
                              capture_output=True, text=True, timeout=60)

    listed = json.loads(run("--json", "list").stdout)
    assert [(r["name"], r["versions"], r["distribution"]) for r in listed] == [
        ("billing", [1], "acme_catalog"), ("greeting", [1], None),
    ]
    assert "billing    v1        acme_catalog" in run("list").stdout
    assert run("call", "billing", "1", "amount=21").stdout == "42\n"
    assert run("call", "greeting", "1", "--customer", "acme", "name=Ann").stdout == '"Hello, Ann, welcome"\n'
    process = run("call", "greeting", "1", "--customer", "zed", "name=Ann")
    assert process.returncode == 1 and "PluginError: customer 'zed' cannot call 'greeting'" in process.stderr
    problems = json.loads(run("--json", "check").stdout)
    assert sorted((p["kind"], p["distribution"]) for p in problems) == [("folder", None), ("import", "broken_catalog")]
    ghost = next(p for p in problems if p["kind"] == "folder")
    assert ghost["message"].startswith("distribution 'broken_catalog': entry point 'ghost' in taskcatalog.plugins "
                                       "(broken_catalog.nowhere) cannot be found: ModuleNotFoundError")
    # The configuration switch turns discovery off.
    config = project / "taskcatalog.toml"
    config.write_text(config.read_text().replace('plugins = ["plugins"]', 'plugins = ["plugins"]\nentry_points = false'))
    assert [r["name"] for r in json.loads(run("--json", "list").stdout)] == ["greeting"]
    assert run("check").returncode == 0
