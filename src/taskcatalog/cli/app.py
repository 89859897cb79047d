"""The ``taskcatalog`` command: global options, finding the catalog, running one command.

Commands live in modules by theme (``catalog_commands``, ``scaffold``,
``operations``, ``batch_commands``); each registers ``Command`` entries in
``COMMANDS``, so this module only parses, opens what the command needs, runs
it and turns every failure into one line and an exit status.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from .. import __version__
from ..catalog import Catalog
from ..config import find_config
from ..errors import CatalogError, brief
from .output import PROG, Failure, UsageError, to_json

__all__ = ["Command", "Session", "COMMANDS", "main", "build_parser"]


@dataclass
class Session:
    """What a command gets: its arguments, where to print, and the catalog (opened on first use)."""

    args: argparse.Namespace
    out: TextIO
    err: TextIO
    recording: bool  # open the catalog as configured (database, telemetry), not just its files
    _catalog: Catalog | None = None

    @property
    def json(self) -> bool:
        return bool(self.args.json)

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = open_catalog(self.args, self.recording)
        return self._catalog

    def emit(self, value: Any) -> None:
        """Print ``value`` as one line of JSON (for ``--json``)."""
        print(to_json(value), file=self.out)

    def close(self) -> None:
        if self._catalog is not None:
            report = self._catalog.close()
            if report is not None and report.unwritten:
                print(f"{PROG}: warning: {report.unwritten} call record(s) could not be written: {report.error}",
                      file=self.err)


@dataclass(frozen=True)
class Command:
    """One command: its help, an example, its arguments and what it runs (or its subcommands)."""

    help: str
    example: str
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    run: Callable[[Session], int] | None = None
    recording: bool = False  # needs the catalog as configured: database, telemetry
    assignments: bool = False  # trailing key=value words go to args.arguments
    subcommands: dict[str, Command] = field(default_factory=dict)


COMMANDS: dict[str, Command] = {}


def open_catalog(args: argparse.Namespace, recording: bool) -> Catalog:
    """The catalog the options name: folders, else the configuration file, else a checkout's example.

    The file is ``--config``, else ``$TASKCATALOG_CONFIG``, else
    ``./taskcatalog.toml``. Without ``recording`` the catalog is opened
    without its database and telemetry: commands that only read files do
    not touch (or wait for) the database.
    """
    interfaces, plugins = args.interfaces, args.plugins
    if interfaces is not None or plugins is not None:
        for role, folders in (("interface", interfaces), ("plugin", plugins)):
            for folder in folders or ():
                if not os.path.isdir(folder):
                    what = "is not a folder" if os.path.exists(folder) else "does not exist"
                    raise Failure(f"{role} folder {folder} {what}")
        if interfaces is None:
            raise UsageError("--plugins needs --interfaces (or use a configuration file)")
        return Catalog(interfaces, plugins or [], telemetry=recording)
    path = find_config(args.config, os.environ, os.getcwd())
    if path is not None:
        if recording:
            return Catalog.from_config(path)
        return Catalog.from_config(path, database=None, telemetry=False, customer_database=None)
    example = os.path.join("src", "interfaces")
    if os.path.isdir(example):
        plugins_dir = os.path.join("src", "plugins")
        return Catalog(example, [plugins_dir] if os.path.isdir(plugins_dir) else [], telemetry=recording)
    raise UsageError(
        "no catalog here: no taskcatalog.toml in this folder; pass --config FILE, set TASKCATALOG_CONFIG, "
        "run 'taskcatalog init DIR', or pass --interfaces DIR"
    )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, like every other error
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _add_common(parser: argparse.ArgumentParser, top: bool) -> None:
    default = None if top else argparse.SUPPRESS  # after the command, without overriding what came before
    parser.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="print JSON for scripts (nothing else on stdout)")
    parser.add_argument("--config", metavar="FILE", default=default,
                        help="the configuration file (default: $TASKCATALOG_CONFIG, then ./taskcatalog.toml)")


def _add_commands(parser: argparse.ArgumentParser, commands: dict[str, Command], path: str) -> None:
    sub = parser.add_subparsers(dest=path or "command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, command in commands.items():
        child = sub.add_parser(
            name, help=command.help, description=command.help,
            epilog=f"example:\n  {command.example}", formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_common(child, top=False)
        if command.arguments is not None:
            command.arguments(child)
        if command.subcommands:
            _add_commands(child, command.subcommands, f"{path or 'command'}_{name}")
        child.set_defaults(_command=command)


def build_parser() -> argparse.ArgumentParser:
    from . import batch_commands, catalog_commands, operations, scaffold  # noqa: F401 - they register commands

    parser = _Parser(
        prog=PROG,
        description="A catalog of versioned interfaces with per-customer plugins.",
        epilog="example:\n  taskcatalog call interface_a 1 --customer customer_1 arg1=2 arg2=21\n\n"
               "'taskcatalog COMMAND --help' tells more about each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser, top=True)
    parser.add_argument("--interfaces", action="append", metavar="DIR",
                        help="an interface folder (repeatable), instead of a configuration file")
    parser.add_argument("--plugins", action="append", metavar="DIR", help="a plugin folder (repeatable)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr (-vv for debug)")
    parser.add_argument("--debug", action="store_true", help="show a traceback when something fails")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_commands(parser, COMMANDS, "")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; return the exit status."""
    out = out or sys.stdout
    err = sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    session: Session | None = None
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        command: Command = args._command
        if extra and not command.assignments:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see '{PROG} {args.command} --help')")
        if command.assignments:
            args.arguments = [*getattr(args, "arguments", []), *extra]
        if args.verbose:
            logging.basicConfig(
                level=logging.DEBUG if args.verbose > 1 else logging.INFO,
                format=f"{PROG}: %(levelname)s: %(name)s: %(message)s",
            )
        assert command.run is not None
        session = Session(args, out, err, command.recording)
        return command.run(session)
    except UsageError as exc:
        _report(debug, f"{brief(exc, 500)}")
        return 2
    except Failure as exc:
        _report(debug, f"{brief(exc, 500)}")
        return 1
    except (CatalogError, OSError, ValueError, TypeError, LookupError) as exc:
        _report(debug, f"{type(exc).__name__}: {brief(exc, 500)}")
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return 130
    finally:
        if session is not None:
            try:
                session.close()
            except Exception as exc:  # noqa: BLE001 - closing must not hide the command's own outcome
                print(f"{PROG}: warning: closing the catalog failed: {brief(exc, 300)}", file=err)


def _report(debug: bool, line: str) -> None:
    if debug:
        traceback.print_exc()
    print(f"{PROG}: error: {line}", file=sys.stderr)
