"""The command line, run as a real subprocess."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def run(*args, cwd=ROOT, check_rc=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.run(
        [sys.executable, "-m", "taskcatalog", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    if check_rc is not None:
        assert process.returncode == check_rc, process.stderr
    return process


def test_example_call_from_a_checkout():
    process = run("call", "interface_a", "1", "--customer", "customer_1", "arg1=2", "arg2=21", check_rc=0)
    assert process.stdout == "34.0\n" and process.stderr == ""
    assert run("call", "interface_a", "1", "arg1=2", "--customer", "customer_2", "arg2=21", check_rc=0).stdout == "2.5\n"
    assert run("call", "interface_a", "1", "arg1=2", "arg2=21", check_rc=0).stdout == "2\n"


def test_list():
    assert run("list", check_rc=0).stdout == (
        "interface      versions\n"
        "interface_a    v1, v2, v3\n"
        "invoice_total  v1, v2\n"
    )
    rows = json.loads(run("--json", "list", check_rc=0).stdout)
    assert rows == [{"name": "interface_a", "versions": [1, 2, 3], "error": None, "distribution": None},
                    {"name": "invoice_total", "versions": [1, 2], "error": None, "distribution": None}]
    assert json.loads(run("list", "--json", check_rc=0).stdout) == rows


def test_call_json_values_and_strings():
    process = run("--json", "call", "invoice_total", "latest", "--customer", "customer_1",
                  'lines=[{"qty": 1, "price": 60}]', "currency=USD", check_rc=0)
    result = json.loads(process.stdout)
    assert result["status"] == "ok" and result["error"] is None and result["call_id"]
    assert result["value"] == {"subtotal": 60.0, "adjustments": [-3.0, 0.0], "total": 57.0, "currency": "USD"}


def test_call_skipped_and_deprecated():
    process = run("call", "invoice_total", "2", "lines=[]", check_rc=0)
    assert process.stdout == "skipped: the task was not actionable\n"
    process = run("call", "invoice_total", "1", 'lines=[{"qty": 2, "price": 1.25}]', check_rc=0)
    assert process.stdout == "2.5\n"
    assert process.stderr == ("taskcatalog: warning: invoice_total v1 is deprecated (retired after 2030-12-31): "
                              "use v2, which applies the customer's adjustments\n")


@pytest.mark.parametrize(
    ("args", "rc", "message"),
    [
        (["call", "interface_a", "9"], 1, "taskcatalog: error: VersionNotFound: interface 'interface_a' has no version 9; versions: 1, 2, 3"),
        (["call", "nope", "1"], 1, "taskcatalog: error: InterfaceNotFound: no interface 'nope' in the catalog"),
        (["call", "interface_a", "1", "--customer", "../x", "arg1=1", "arg2=2"], 1, "taskcatalog: error: InvalidName: invalid customer name '../x'"),
        (["call", "interface_a", "1", "arg1=1", "bogus=3"], 1, "taskcatalog: error: ArgumentError: interface_a v1"),
        (["call", "interface_a", "01"], 2, "taskcatalog: error: version must be a positive integer, 'latest' or 'pinned', not '01'"),
        (["call", "interface_a", "1", "notakeyvalue"], 2, "taskcatalog: error: expected key=value with key a Python identifier, got 'notakeyvalue'"),
        (["list", "--bogus"], 2, "taskcatalog: error: unrecognized arguments: --bogus"),
        (["frobnicate"], 2, "taskcatalog: error: argument COMMAND: invalid choice: 'frobnicate'"),
        ([], 2, "taskcatalog: error: the following arguments are required: COMMAND"),
    ],
)
def test_errors_are_one_line(args, rc, message):
    process = run(*args)
    assert process.returncode == rc
    assert process.stderr.startswith(message), process.stderr
    assert process.stderr.count("\n") == 1 and "Traceback" not in process.stderr


def test_entrypoint_exception_is_one_line(layout):
    layout.interface("boom", "def boom_entrypoint_v1(ctx):\n    raise RuntimeError('kaput')\n")
    process = run("--interfaces", str(layout.interfaces), "call", "boom", "1", cwd=layout.root)
    assert process.returncode == 1
    assert process.stderr == "taskcatalog: error: RuntimeError: kaput\n"
    process = run("--interfaces", str(layout.interfaces), "--json", "call", "boom", "1", cwd=layout.root)
    assert process.returncode == 1
    assert json.loads(process.stdout)["error"] == {"type": "RuntimeError", "message": "kaput"}


def test_no_catalog_outside_a_checkout(tmp_path):
    process = run("list", cwd=tmp_path)
    assert process.returncode == 2
    assert process.stderr == (
        "taskcatalog: error: no catalog here: no taskcatalog.toml in this folder; pass --config FILE, "
        "set TASKCATALOG_CONFIG, run 'taskcatalog init DIR', or pass --interfaces DIR\n"
    )


def test_folders_from_options(scale):
    process = run("--interfaces", str(scale.interfaces), "--plugins", str(scale.plugins),
                  "call", "scale", "1", "--customer", "acme", "x=21", cwd=scale.root, check_rc=0)
    assert process.stdout == "42.0\n"


@pytest.mark.parametrize("command", [[], ["list"], ["call"]])
def test_help(command):
    process = run(*command, "--help", check_rc=0)
    assert process.stdout.startswith("usage: taskcatalog")


def test_version():
    assert run("--version", check_rc=0).stdout.startswith("taskcatalog 0.")


ODD_VALUES = """
import math

class Loud:
    def __repr__(self):
        raise RuntimeError("no repr for you")
    __str__ = __repr__

def deep():
    value = []
    for _ in range(1000):
        value = [value]
    return value

VALUES = {
    "nan": float("nan"), "inf": float("inf"), "ninf": -math.inf, "mixed": [1.5, float("nan"), {"k": math.inf}],
    "deep": deep(), "loud": Loud(), "keys": {1: "one", (2, 3): "tuple"}, "text": "line one\\nline two",
}

def odd_entrypoint_v1(ctx, kind):
    return VALUES[kind]

def odd_entrypoint_v2(ctx, kind):
    raise ValueError("first line\\nsecond line " + "x" * 2000)
"""


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("nan", "NaN"), ("inf", "Infinity"), ("ninf", "-Infinity"), ("mixed", [1.5, "NaN", {"k": "Infinity"}]),
        ("keys", {"1": "one", "(2, 3)": "tuple"}), ("text", "line one\nline two"),
    ],
)
def test_json_output_stays_json_whatever_the_value(layout, kind, expected):
    layout.interface("odd", ODD_VALUES)
    for args in (["--json", "call", "odd", "1", f"kind={kind}"], ["call", "odd", "1", f"kind={kind}"]):
        process = run("--interfaces", str(layout.interfaces), *args, cwd=layout.root, check_rc=0)
        document = json.loads(process.stdout)  # the strict parser below refuses NaN / Infinity
        json.loads(process.stdout, parse_constant=lambda name: pytest.fail(f"not JSON: {name}"))
        assert (document["value"] if "--json" in args else document) == expected


@pytest.mark.parametrize(("kind", "shown"), [("deep", "<list nested too deep to show>"), ("loud", "RuntimeError")])
def test_values_json_cannot_hold_are_shown_not_crashed_on(layout, kind, shown):
    layout.interface("odd", ODD_VALUES)
    process = run("--interfaces", str(layout.interfaces), "--json", "call", "odd", "1", f"kind={kind}",
                  cwd=layout.root, check_rc=0)
    value = json.loads(process.stdout)["value"]
    while isinstance(value, list):  # a deep value is shown as deep as is useful, then summarised
        [value] = value
    assert isinstance(value, str) and shown in value and len(value) < 500
    assert process.stderr == ""


def test_an_error_message_with_newlines_is_one_bounded_line(layout):
    layout.interface("odd", ODD_VALUES)
    process = run("--interfaces", str(layout.interfaces), "call", "odd", "2", "kind=x", cwd=layout.root)
    assert process.returncode == 1
    assert process.stderr.startswith("taskcatalog: error: ValueError: first line second line xxx")
    assert process.stderr.count("\n") == 1 and len(process.stderr) < 600
    process = run("--interfaces", str(layout.interfaces), "--json", "call", "odd", "2", "kind=x", cwd=layout.root)
    assert process.returncode == 1
    assert json.loads(process.stdout)["error"]["message"].startswith("first line\nsecond line")  # JSON keeps it whole


@pytest.mark.parametrize("version", ["\u00b2", "\u0661", "1\u0663", "+1", " 1", "1.0", "-1", "0"])
def test_versions_are_ascii_digits_only(version):
    process = run("call", "interface_a", version)
    assert process.returncode == 2
    assert process.stderr == (
        f"taskcatalog: error: version must be a positive integer, 'latest' or 'pinned', not {version!r}\n"
    )


def test_a_folder_that_does_not_exist_is_an_error(tmp_path):
    process = run("--interfaces", str(tmp_path / "nowhere"), "list", cwd=tmp_path)
    assert process.returncode == 1
    assert process.stderr == f"taskcatalog: error: interface folder {tmp_path / 'nowhere'} does not exist\n"
    (tmp_path / "interfaces").mkdir()
    process = run("--interfaces", str(tmp_path / "interfaces"), "--plugins", str(tmp_path / "nope"), "list", cwd=tmp_path)
    assert process.returncode == 1
    assert process.stderr == f"taskcatalog: error: plugin folder {tmp_path / 'nope'} does not exist\n"


@pytest.mark.parametrize(
    "body",
    [
        "x = " + "+".join(["1"] * 200_000) + "\n",
        "raise BaseException('bare')\n",
        "raise SystemExit(3)\n",
    ],
    ids=["RecursionError", "BaseException", "SystemExit"],
)
def test_files_that_fail_oddly_are_one_line_errors(layout, body):
    layout.interface("odd", body)
    process = run("--interfaces", str(layout.interfaces), "call", "odd", "1", cwd=layout.root)
    assert process.returncode == 1
    assert process.stderr.startswith("taskcatalog: error: LoadError: cannot load interface 'odd' from ")
    assert process.stderr.count("\n") == 1 and "Traceback" not in process.stderr
