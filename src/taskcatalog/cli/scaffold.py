"""Commands that write files: ``init DIR`` (a new catalog project) and ``new interface|version|plugin``.

They never overwrite: an existing file, or a non-empty folder for ``init``,
is a refusal (exit 1) that names it. Every name is checked by the rules of
DESIGN 2.2 before any file is written.
"""

from __future__ import annotations

import argparse
import ast
import os
import textwrap
from typing import Any

from ..naming import check_customer_name, check_interface_name
from .app import COMMANDS, Command, Session
from .output import Failure, UsageError

_CONFIG = """\
# A taskcatalog project: see https://github.com/ (docs/configuration.md in taskcatalog).
[catalog]
interfaces = ["interfaces"]
plugins = ["plugins"]
database = "var/catalog.sqlite3"
customer_database = "var/customers/{customer}.sqlite3"

# Pin a customer to a version (calls with version 'pinned' get it):
# [customers.example_customer.versions]
# greeting = 1
"""

_INTERFACE = '''\
"""{name}: {summary}

Each version is a function {name}_entrypoint_v<N>; executors choose one per call.
"""

from taskcatalog import slot


@slot("decorate", args={{"text": str}}, returns=str)
def {name}_entrypoint_v1(ctx, name: str):
    """Greet ``name``; a customer's plugin may decorate the text (slot ``decorate``)."""
    text = f"Hello, {{name}}"
    found, decorated = ctx.plugins.call("decorate", text=text)
    return decorated if found else text
'''

_PLUGIN_EXAMPLE = '''\
"""example_customer's plugins for greeting."""

from taskcatalog import plugin_config


@plugin_config(version=1, slot="decorate")
def shout(ctx, text: str) -> str:
    return text.upper() + "!"
'''

_README = """\
# {title}

A [taskcatalog](https://pypi.org/project/taskcatalog/) project: versioned
interfaces in `interfaces/`, each customer's plugins in `plugins/<customer>/`,
settings in `taskcatalog.toml`.

```sh
taskcatalog check                                   # every file loads, every plugin fits
taskcatalog list
taskcatalog call greeting 1 --customer example_customer name=Ann
taskcatalog new interface invoice                   # a new interface, v1
taskcatalog new version greeting                    # greeting v2, a copy of v1 to edit
taskcatalog new plugin acme greeting --slot decorate
```

Calls are recorded in `var/catalog.sqlite3` (`taskcatalog stats`, `usage`, `history`).
"""


def _write_new(path: str, text: str) -> None:
    """Create ``path`` with ``text``; refuse if anything is there already."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with open(path, "x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        raise Failure(f"{path} already exists; refusing to overwrite it") from None


def shown(path: str) -> str:
    """A path as people read it: relative to the current folder when it is below it."""
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


def _report(session: Session, created: list[str], message: str) -> int:
    if session.json:
        session.emit({"created": created})
    else:
        for path in created:
            print(f"created {shown(path)}", file=session.out)
        print(message, file=session.out)
    return 0


# -- init -------------------------------------------------------------------------


def _add_init(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="the project folder (created; must be empty if it exists)")


def run_init(session: Session) -> int:
    folder = os.path.abspath(session.args.dir)
    if os.path.exists(folder):
        if not os.path.isdir(folder):
            raise Failure(f"{folder} exists and is not a folder")
        if os.listdir(folder):
            raise Failure(f"{folder} is not empty; 'taskcatalog init' only writes into a new or empty folder")
    files = {
        "taskcatalog.toml": _CONFIG,
        os.path.join("interfaces", "greeting.py"): _INTERFACE.format(name="greeting", summary="say hello, the way each customer likes it."),
        os.path.join("plugins", "example_customer", "greeting.py"): _PLUGIN_EXAMPLE,
        "README.md": _README.format(title=os.path.basename(folder) or "catalog"),
        ".gitignore": "var/\n__pycache__/\n",
    }
    created = []
    for relative, text in files.items():
        path = os.path.join(folder, relative)
        _write_new(path, text)
        created.append(path)
    return _report(session, created, (
        f"next: cd {shown(folder)} && taskcatalog call greeting 1 --customer example_customer name=Ann"
    ))


# -- new interface / version / plugin ------------------------------------------------------


def _local_folder(session: Session, kind: str) -> str:
    """The first folder of ``kind`` that belongs to this project (not to an installed distribution)."""
    for entry in session.catalog.folders():
        if entry["kind"] == kind and entry["distribution"] is None:
            return str(entry["folder"])
    raise Failure(f"this catalog has no {kind} folder to write into; add one to taskcatalog.toml")


def _add_new_interface(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the interface name (a Python identifier)")


def run_new_interface(session: Session) -> int:
    name = check_interface_name(session.args.name)
    if name in session.catalog.interfaces():
        raise Failure(f"interface {name!r} already exists: {session.catalog.path_of(name)}")
    path = os.path.join(_local_folder(session, "interfaces"), f"{name}.py")
    _write_new(path, _INTERFACE.format(name=name, summary="what it does, in one line."))
    return _report(session, [path], f"next: edit {shown(path)}, then 'taskcatalog call {name} 1 name=Ann'")


def _add_new_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the interface whose latest version is copied as the next one")


def _latest_definition(tree: ast.Module, name: str) -> tuple[int, ast.stmt]:
    """The latest well-formed entrypoint definition of ``name`` in a module's syntax tree."""
    prefix = f"{name}_entrypoint_v"
    found: dict[int, ast.stmt] = {}
    for node in tree.body:
        names: list[str] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        for defined in names:
            suffix = defined[len(prefix):]
            if defined.startswith(prefix) and suffix.isascii() and suffix.isdigit() and not suffix.startswith("0"):
                found[int(suffix)] = node
    if not found:
        raise Failure(f"interface {name!r} defines no {name}_entrypoint_v<N> to copy")
    latest = max(found)
    return latest, found[latest]


def run_new_version(session: Session) -> int:
    name = check_interface_name(session.args.name)
    path = session.catalog.path_of(name)
    with open(path, encoding="utf-8") as file:
        source = file.read()
    try:
        tree = ast.parse(source, path)
    except SyntaxError as exc:
        raise Failure(f"{path}:{exc.lineno}: cannot copy a version out of a file that does not parse: {exc.msg}") from None
    latest, node = _latest_definition(tree, name)
    lines = source.splitlines()
    decorators = getattr(node, "decorator_list", [])
    kept = [d for d in decorators if "deprecated" not in (ast.get_source_segment(source, d) or "")]
    first = min([node.lineno, *(d.lineno for d in decorators)])
    body = lines[first - 1:node.end_lineno]
    if len(kept) != len(decorators):  # drop @deprecated(...) lines: the new version is not deprecated
        dropped = {line for d in decorators if d not in kept for line in range(d.lineno, (d.end_lineno or d.lineno) + 1)}
        body = [text for number, text in enumerate(lines[first - 1:node.end_lineno], first) if number not in dropped]
    copy = "\n".join(body).replace(f"{name}_entrypoint_v{latest}", f"{name}_entrypoint_v{latest + 1}")
    addition = f"\n\n{copy}\n" if source.endswith("\n") else f"\n\n\n{copy}\n"
    updated = source + addition
    try:
        compile(updated, path, "exec")
    except SyntaxError as exc:  # pragma: no cover - a copy of code that parsed parses
        raise Failure(f"copying v{latest} of {path} would not compile: {exc}") from None
    with open(path, "a", encoding="utf-8") as file:
        file.write(addition)
    if session.json:
        session.emit({"interface": name, "version": latest + 1, "path": path, "copied_from": latest})
    else:
        print(f"added {name}_entrypoint_v{latest + 1} to {shown(path)} (a copy of v{latest}): edit it", file=session.out)
    return 0


def _add_new_plugin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("customer", help="the customer the plugin is for")
    parser.add_argument("interface", help="the interface whose slot it fills")
    parser.add_argument("--slot", required=True, help="the slot id (a number is an int slot id)")
    parser.add_argument("--version", type=str, default=None,
                        help="the version it is for (default: every version that declares the slot)")


def _builtin_name(type_name: str) -> str | None:
    """The annotation for a slot's type name when it is a builtin, else None (left unannotated)."""
    import builtins

    return type_name if isinstance(getattr(builtins, type_name, None), type) else None


def run_new_plugin(session: Session) -> int:
    args = session.args
    customer = check_customer_name(args.customer)
    name = check_interface_name(args.interface)
    slot_id: Any = int(args.slot) if args.slot.isascii() and args.slot.isdigit() else args.slot
    version = None
    if args.version is not None:
        if not (args.version.isascii() and args.version.isdigit() and not args.version.startswith("0")):
            raise UsageError(f"--version must be a positive integer, not {args.version!r}")
        version = int(args.version)
    described = session.catalog.describe(name)
    contracts = {
        v["version"]: next((s for s in v["slots"] if s["slot"] == slot_id), None) for v in described["versions"]
    }
    if version is not None and version not in contracts:
        raise Failure(f"interface {name!r} has no version {version} (versions: {', '.join(map(str, contracts)) or 'none'})")
    candidates = {v: c for v, c in contracts.items() if c is not None and (version is None or v == version)}
    if not candidates:
        where = f"v{version}" if version is not None else "any version"
        declared = sorted({repr(s["slot"]) for v in described["versions"] for s in v["slots"]})
        raise Failure(f"{where} of {name!r} declares no slot {slot_id!r} (slots: {', '.join(declared) or 'none'})")
    contract = candidates[max(candidates)]
    parameters = ["ctx"] if contract.get("context", True) else []
    for arg, type_name in (contract["args"] or {}).items():
        annotation = _builtin_name(type_name)
        parameters.append(f"{arg}: {annotation}" if annotation else arg)
    parameters.append("**kwargs")
    returns = _builtin_name(contract["returns"]) if contract["returns"] else None
    function = slot_id if isinstance(slot_id, str) and slot_id.isidentifier() else f"slot_{slot_id}"
    version_part = "" if version is None else f"version={version}, "
    text = textwrap.dedent(f'''\
        """{customer}'s plugins for {name}."""

        from taskcatalog import plugin_config


        @plugin_config({version_part}slot={slot_id!r})
        def {function}({", ".join(parameters)}){f" -> {returns}" if returns else ""}:
            """Fill slot {slot_id!r} of {name} for {customer}."""
            raise NotImplementedError("write {customer}'s {function} plugin for {name}")
        ''')
    path = os.path.join(_local_folder(session, "plugins"), customer, f"{name}.py")
    _write_new(path, text)
    return _report(session, [path], f"next: edit {shown(path)}, then 'taskcatalog check --customer {customer}'")


COMMANDS["init"] = Command(
    "create a new catalog project in DIR (taskcatalog.toml, interfaces/, plugins/, README)",
    "taskcatalog init my-catalog", _add_init, run_init,
)
COMMANDS["new"] = Command(
    "write a new interface, version or plugin (never overwrites)",
    "taskcatalog new plugin acme greeting --slot decorate",
    subcommands={
        "interface": Command("a new interface file with a v1 to edit", "taskcatalog new interface invoice",
                             _add_new_interface, run_new_interface),
        "version": Command("copy the latest version of an interface as the next one", "taskcatalog new version greeting",
                           _add_new_version, run_new_version),
        "plugin": Command("a plugin stub for a customer whose signature fits the slot's contract",
                          "taskcatalog new plugin acme greeting --slot decorate --version 1",
                          _add_new_plugin, run_new_plugin),
    },
)
