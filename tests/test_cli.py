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
    assert run("list", check_rc=0).stdout == "interface_a    v1, v2, v3\ninvoice_total  v1, v2\n"
    rows = json.loads(run("--json", "list", check_rc=0).stdout)
    assert rows == [{"name": "interface_a", "versions": [1, 2, 3], "error": None},
                    {"name": "invoice_total", "versions": [1, 2], "error": None}]
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
    assert process.stderr == "taskcatalog: error: no catalog here: pass --interfaces DIR (and --plugins DIR), or run from a checkout\n"


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
