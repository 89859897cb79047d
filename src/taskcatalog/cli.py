"""The ``taskcatalog`` command line.

Each command is a function ``(catalog, args, out) -> exit code`` registered
in ``COMMANDS`` with the function that adds its arguments, so a new command
is one entry in the table. Errors are one line on stderr and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from . import __version__
from .catalog import Catalog
from .context import Context
from .errors import CatalogError, brief

PROG = "taskcatalog"


class UsageError(Exception):
    """A command line that cannot be carried out; printed as one line, exit 2."""


class Failure(Exception):
    """A problem the command found (a folder missing, ...); printed as one line, exit 1."""


# How deep a value is shown before the rest is summarised: deeper than any
# sensible result, far shallower than the recursion limit json.dumps would hit.
_MAX_DEPTH = 100
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _shown(value: object) -> str:
    """``repr(value)``, bounded, or a note saying why there is none."""
    try:
        return brief(repr(value), 300)
    except Exception as exc:  # noqa: BLE001 - a foreign __repr__ may raise anything
        return f"<{type(value).__name__} object; its repr() raised {type(exc).__name__}>"


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data: NaN and infinities as the strings ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"``; other keys as their ``str``; anything JSON
    cannot hold (or nested deeper than 100) as a bounded ``repr``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NON_FINITE[repr(value)]
    if depth >= _MAX_DEPTH:
        return f"<{type(value).__name__} nested too deep to show>"
    if isinstance(value, Mapping):
        return {_key(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item, depth + 1) for item in value]
    return _shown(value)


def _key(key: object) -> str:
    """A mapping key as JSON needs it, a string: ``1`` -> ``"1"``, ``(2, 3)`` -> ``"(2, 3)"``."""
    if isinstance(key, str):
        return key
    plain = jsonable(key)
    if isinstance(plain, str):  # NaN, infinities, objects shown by their repr
        return plain
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(plain)
    return _shown(key)


def _to_json(value: Any) -> str:
    return json.dumps(jsonable(value), ensure_ascii=False, allow_nan=False)


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as JSON when it parses, else kept as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise UsageError(f"expected key=value with key a Python identifier, got {text!r}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


_VERSION = re.compile(r"[1-9][0-9]*", re.ASCII)


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


# -- commands ----------------------------------------------------------------


def _add_list(parser: argparse.ArgumentParser) -> None:
    pass


def cmd_list(catalog: Catalog, args: argparse.Namespace, out: TextIO) -> int:
    rows: list[tuple[str, list[int], str | None]] = []
    for name in catalog.interfaces():
        try:
            rows.append((name, catalog.versions(name), None))
        except CatalogError as exc:
            rows.append((name, [], str(exc)))
    if args.json:
        print(_to_json([{"name": n, "versions": v, "error": e} for n, v, e in rows]), file=out)
        return 0
    width = max((len(name) for name, _, _ in rows), default=0)
    for name, versions, error in rows:
        detail = error or ", ".join(f"v{v}" for v in versions) or "no versions"
        print(f"{name:<{width}}  {detail}", file=out)
    if not rows:
        print("no interfaces", file=out)
    return 0


def _add_call(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="interface name")
    parser.add_argument("version", help="a version number, 'latest', or 'pinned'")
    parser.add_argument("--customer", help="the customer whose plugins apply (default: none)")
    # Collected by main() from what argparse leaves over, so they may come
    # before or after --customer (argparse cannot intermix positionals with
    # subcommands).
    parser.add_argument("arguments", nargs="*", metavar="key=value", help="keyword arguments; values are JSON where they parse")


def cmd_call(catalog: Catalog, args: argparse.Namespace, out: TextIO) -> int:
    version = parse_version(args.version)
    kwargs = dict(parse_assignment(item) for item in args.arguments)
    ctx = None if args.customer is None else Context(args.customer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        result = catalog.run(args.name, version, ctx, **kwargs)
    for warning in caught:
        print(f"{PROG}: warning: {warning.message}", file=sys.stderr)
    if args.json:
        print(_to_json(result.to_dict()), file=out)
    elif result.status == "ok":
        print(_to_json(result.value), file=out)
    elif result.status == "skipped":
        print("skipped: the task was not actionable", file=out)
    if result.status == "error":
        assert result.error is not None
        if not args.json:
            print(f"{PROG}: error: {type(result.error).__name__}: {brief(result.error, 500)}", file=sys.stderr)
        return 1
    return 0


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Catalog, argparse.Namespace, TextIO], int]
    takes_assignments: bool = False  # trailing key=value words go to args.arguments


COMMANDS: dict[str, Command] = {
    "list": Command("list the interfaces and their versions", _add_list, cmd_list),
    "call": Command("call an interface for a customer and print the result", _add_call, cmd_call, True),
}


# -- plumbing ----------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, like every other error
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="A catalog of versioned interfaces with per-customer plugins.")
    parser.add_argument("--interfaces", action="append", metavar="DIR",
                        help="interface folder (repeatable; default: src/interfaces)")
    parser.add_argument("--plugins", action="append", metavar="DIR",
                        help="plugin folder (repeatable; default: src/plugins)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr (-vv for debug)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help)
        # Accept the global flags after the command too: `taskcatalog list --json`.
        sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts")
        command.add_arguments(sub)
    return parser


def open_catalog(args: argparse.Namespace) -> Catalog:
    """The catalog the options name, or the example catalog of a checkout."""
    interfaces, plugins = args.interfaces, args.plugins
    for role, folders in (("interface", interfaces), ("plugin", plugins)):
        for folder in folders or ():
            if not os.path.isdir(folder):
                what = "is not a folder" if os.path.exists(folder) else "does not exist"
                raise Failure(f"{role} folder {folder} {what}")
    if interfaces is None:
        if not os.path.isdir(os.path.join("src", "interfaces")):
            raise UsageError("no catalog here: pass --interfaces DIR (and --plugins DIR), or run from a checkout")
        interfaces = [os.path.join("src", "interfaces")]
        if plugins is None and os.path.isdir(os.path.join("src", "plugins")):
            plugins = [os.path.join("src", "plugins")]
    return Catalog(interfaces, plugins or [])


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra and not COMMANDS[args.command].takes_assignments:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see '{PROG} {args.command} --help')")
        if extra:
            args.arguments = [*args.arguments, *extra]
        if args.verbose:
            logging.basicConfig(
                level=logging.DEBUG if args.verbose > 1 else logging.INFO,
                format=f"{PROG}: %(levelname)s: %(name)s: %(message)s",
            )
        with open_catalog(args) as catalog:
            return COMMANDS[args.command].run(catalog, args, out)
    except UsageError as exc:
        print(f"{PROG}: error: {brief(exc, 500)}", file=sys.stderr)
        return 2
    except Failure as exc:
        print(f"{PROG}: error: {brief(exc, 500)}", file=sys.stderr)
        return 1
    except (CatalogError, OSError, ValueError, TypeError) as exc:
        print(f"{PROG}: error: {type(exc).__name__}: {brief(exc, 500)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
