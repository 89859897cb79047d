"""Commands about the catalog's files: ``list``, ``describe``, ``call``, ``check``."""

from __future__ import annotations

import argparse
import json
import re
import warnings
from typing import Any

from ..context import Context
from ..errors import CatalogError, brief
from ..naming import check_customer_name
from .app import COMMANDS, Command, Session
from .output import PROG, UsageError, table, to_json

_VERSION = re.compile(r"[1-9][0-9]*", re.ASCII)


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as JSON when it parses, else kept as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise UsageError(f"expected key=value with key a Python identifier, got {text!r}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def parse_version(text: str) -> int | str | None:
    """``1`` -> 1, ``latest`` -> "latest", ``pinned`` -> None (the customer's pin, else latest).

    Only ASCII digits: ``str.isdigit`` and ``int`` would also take ``²`` or ``١``.
    """
    if text == "latest":
        return "latest"
    if text == "pinned":
        return None
    if _VERSION.fullmatch(text):
        return int(text)
    raise UsageError(f"version must be a positive integer, 'latest' or 'pinned', not {text!r}")


def _source(session: Session, path: str) -> str:
    distribution = session.catalog.origin(path)
    return path if distribution is None else f"{distribution} ({path})"


# -- list ---------------------------------------------------------------------


def run_list(session: Session) -> int:
    catalog = session.catalog
    rows: list[dict[str, Any]] = []
    for name in catalog.interfaces():
        versions: list[int] = []
        error = None
        try:
            versions = catalog.versions(name)
        except CatalogError as exc:
            error = brief(exc, 300)
        rows.append({"name": name, "versions": versions, "error": error,
                     "distribution": catalog.origin(catalog.path_of(name))})
    if session.json:
        session.emit(rows)
        return 0
    installed = any(r["distribution"] for r in rows)  # a column for it only when some are installed
    table(
        ["interface", "versions", *(["from"] if installed else [])],
        [[r["name"], r["error"] or ", ".join(f"v{v}" for v in r["versions"]) or "no versions",
          *([r["distribution"] or "this project"] if installed else [])] for r in rows],
        session.out,
        empty="no interfaces",
    )
    return 0


# -- describe -------------------------------------------------------------------


def _add_describe(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="interface name")


def run_describe(session: Session) -> int:
    catalog = session.catalog
    described = catalog.describe(session.args.name)
    described["distribution"] = catalog.origin(described["path"])
    described["pins"] = catalog.pins_of(session.args.name)
    if session.json:
        session.emit(described)
        return 0
    out = session.out
    print(f"{described['name']}  ({_source(session, described['path'])})", file=out)
    for version in described["versions"]:
        print(file=out)
        print(f"v{version['version']}  {version['signature']}", file=out)
        if version["doc"]:
            print(f"    {version['doc'].splitlines()[0]}", file=out)
        deprecated = version["deprecated"]
        if deprecated:
            state = "retired" if deprecated["retired"] else "deprecated"
            sunset = f", sunset {deprecated['sunset']}" if deprecated["sunset"] else ""
            print(f"    {state}{sunset}: {deprecated['message']}", file=out)
        for slot in version["slots"]:
            args = "..." if slot["args"] is None else ", ".join(f"{n}: {t}" for n, t in slot["args"].items())
            returns = "" if slot["returns"] is None else f" -> {slot['returns']}"
            many = " (many)" if slot["many"] else ""
            users = ", ".join(f"{u['customer']} ({', '.join(u['plugins'])})" for u in slot["customers"]) or "none"
            print(f"    slot {slot['slot']!r}{many}: ({args}){returns}; customers: {users}", file=out)
    if described["pins"]:
        print(file=out)
        print("pins: " + ", ".join(f"{c} -> v{v}" for c, v in sorted(described["pins"].items())), file=out)
    for problem in described["problems"]:
        print(f"problem: {problem['path']}:{problem['line'] or ''}: {problem['message']}", file=out)
    return 0


# -- call ---------------------------------------------------------------------------


def _add_call(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="interface name")
    parser.add_argument("version", help="a version number, 'latest', or 'pinned'")
    parser.add_argument("--customer", help="the customer whose plugins apply (default: none)")
    parser.add_argument("--args-json", metavar="JSON", help="keyword arguments as a JSON object")
    # Collected by main() from what argparse leaves over, so they may come
    # before or after the options (argparse cannot intermix positionals with
    # subcommands).
    parser.add_argument("arguments", nargs="*", metavar="key=value", help="keyword arguments; values are JSON where they parse")


def call_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``--args-json`` and ``key=value`` words (these win)."""
    kwargs: dict[str, Any] = {}
    if args.args_json is not None:
        try:
            loaded = json.loads(args.args_json)
        except ValueError as exc:
            raise UsageError(f"--args-json is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"--args-json must be a JSON object, not {type(loaded).__name__}")
        kwargs.update(loaded)
    kwargs.update(parse_assignment(item) for item in args.arguments)
    return kwargs


def run_call(session: Session) -> int:
    args = session.args
    version = parse_version(args.version)
    kwargs = call_arguments(args)
    ctx = None if args.customer is None else Context(check_customer_name(args.customer))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        result = session.catalog.run(args.name, version, ctx, **kwargs)
    for warning in caught:
        print(f"{PROG}: warning: {brief(warning.message, 500)}", file=session.err)
    if session.json:
        session.emit(result.to_dict())
    elif result.status == "ok":
        print(to_json(result.value), file=session.out)
    elif result.status == "skipped":
        print("skipped: the task was not actionable", file=session.out)
    if result.status == "error":
        assert result.error is not None
        if not session.json:
            print(f"{PROG}: error: {type(result.error).__name__}: {brief(result.error, 500)}", file=session.err)
        return 1
    return 0


# -- check ----------------------------------------------------------------------------


def _add_check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customer", help="only the problems of this customer's plugins (and of the catalog's own files)")
    parser.add_argument("--format", choices=("text", "github"), default="text",
                        help="github: GitHub Actions annotations (::error file=...,line=...::message)")


def _escape(text: str, property_: bool = False) -> str:
    """GitHub workflow command escaping (%, CR, LF; in properties also : and ,)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if property_ else text


def run_check(session: Session) -> int:
    args = session.args
    customer = None if args.customer is None else check_customer_name(args.customer)
    problems = session.catalog.check()
    if customer is not None:
        problems = [p for p in problems if p.customer in (None, customer)]
    if session.json:
        session.emit([
            {**p.to_dict(), "distribution": session.catalog.origin(p.path)} for p in problems
        ])
    elif args.format == "github":
        for p in problems:
            line = f",line={p.line}" if p.line else ""
            print(f"::error file={_escape(p.path, True)}{line},title={_escape(p.kind, True)}::{_escape(p.message)}",
                  file=session.out)
    elif problems:
        for p in problems:
            distribution = session.catalog.origin(p.path)
            print(f"{p}{f'  [{distribution}]' if distribution else ''}", file=session.out)
        print(f"{len(problems)} problem(s)", file=session.out)
    else:
        print("no problems", file=session.out)
    return 1 if problems else 0


COMMANDS["list"] = Command("list the interfaces and their versions", "taskcatalog list", None, run_list)
COMMANDS["describe"] = Command(
    "versions, signatures, slots and who fills them, deprecations, pins", "taskcatalog describe interface_a",
    _add_describe, run_describe,
)
COMMANDS["call"] = Command(
    "call an interface for a customer and print the result",
    "taskcatalog call interface_a 1 --customer customer_1 arg1=2 arg2=21",
    _add_call, run_call, recording=True, assignments=True,
)
COMMANDS["check"] = Command(
    "load every file and list the problems (exit 1 when there are any)", "taskcatalog check --format github",
    _add_check, run_check,
)
