"""Finding interface and plugin files, importing them by path, reading what they define.

Scanning only looks at the tree (``os.scandir`` and its cached ``stat``);
importing happens later, one file at a time, when a call first needs it.
Files are imported with ``importlib.util.spec_from_file_location`` under a
private module name derived from the file's path, so no ``__init__.py`` is
needed, ``sys.path`` is never touched, ``plugins/acme/json.py`` cannot shadow
the standard ``json``, and two customers' ``interface_a.py`` are two modules.
The module sits in ``sys.modules`` only while it executes (``dataclasses``
and ``typing`` look it up there); afterwards the catalog alone owns it.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.util
import inspect
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import CodeType, ModuleType
from typing import Any

from .deprecation import DEPRECATION_ATTR, Deprecation
from .errors import LoadError
from .naming import is_customer_name, is_interface_name, parse_entrypoint
from .plugins import PLUGIN_ATTR, SLOTS_ATTR, Plugin, PluginConfig, SlotContract, SlotId
from .results import Problem
from .tasks import BaseTask

LOG = logging.getLogger("taskcatalog.loading")

Stamp = tuple[int, int, int]  # (inode, size, mtime_ns): a rename-over changes the inode


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: str  # absolute
    stamp: Stamp


PluginKey = tuple[str, str]  # (customer, interface)


@dataclass(frozen=True, slots=True)
class Tree:
    """What the folders held at one scan: file paths and stamps, no imports."""

    interfaces: Mapping[str, SourceFile] = field(default_factory=dict)
    plugins: Mapping[PluginKey, SourceFile] = field(default_factory=dict)
    # An interface name or plugin key found in more than one folder: every path.
    duplicates: Mapping[str | PluginKey, tuple[str, ...]] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()
    unreadable: frozenset[str] = frozenset()  # folders that could not be listed
    interface_dirs: tuple[str, ...] = ()

    def customers(self) -> list[str]:
        return sorted({customer for customer, _ in self.plugins})

    def files(self) -> dict[str, SourceFile]:
        """Every file by path, for comparing two scans."""
        out = {s.path: s for s in self.interfaces.values()}
        out.update((s.path, s) for s in self.plugins.values())
        return out


def _list_folder(folder: str, role: str, problems: list[Problem], unreadable: set[str]) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda entry: entry.name)
    except FileNotFoundError:
        problems.append(Problem(folder, None, "folder", f"{role} folder {folder} does not exist"))
    except NotADirectoryError:
        problems.append(Problem(folder, None, "folder", f"{role} folder {folder} is not a folder"))
    except OSError as exc:
        problems.append(Problem(folder, None, "folder", f"cannot read {role} folder {folder}: {exc.strerror or exc}"))
    unreadable.add(folder)
    return []


def _python_files(
    entries: Iterable[os.DirEntry[str]], what: str, problems: list[Problem]
) -> Iterable[tuple[str, SourceFile]]:
    """``(stem, SourceFile)`` for each ``<identifier>.py``; private and hidden names are skipped."""
    for entry in entries:
        if not entry.name.endswith(".py") or entry.name.startswith(("_", ".")):
            continue
        stem = entry.name[:-3]
        if not is_interface_name(stem):
            problems.append(
                Problem(entry.path, None, "name", f"{what} file name {entry.name!r} is not <identifier>.py; it is ignored")
            )
            continue
        try:
            st = entry.stat()
        except OSError as exc:
            problems.append(Problem(entry.path, None, "import", f"cannot read {entry.path}: {exc.strerror or exc}"))
            continue
        yield stem, SourceFile(entry.path, (st.st_ino, st.st_size, st.st_mtime_ns))


def _keep(found: dict[Any, list[SourceFile]], key: Any, source: SourceFile) -> None:
    found.setdefault(key, []).append(source)


def scan(interface_dirs: Iterable[str], plugin_dirs: Iterable[str], previous: Tree | None = None) -> Tree:
    """List the interface and plugin files of the folders.

    When ``previous`` is given, files of a folder that cannot be read now are
    carried over from it: a folder that vanishes for a moment during a deploy
    must not take the catalog down (the failure is still reported).
    """
    interface_dirs = tuple(interface_dirs)
    problems: list[Problem] = []
    unreadable: set[str] = set()
    interfaces: dict[str, list[SourceFile]] = {}
    plugins: dict[PluginKey, list[SourceFile]] = {}

    for folder in interface_dirs:
        entries = _list_folder(folder, "interface", problems, unreadable)
        found = list(_python_files(entries, "interface", problems))
        if not found and folder not in unreadable:
            problems.append(Problem(folder, None, "folder", f"interface folder {folder} holds no interface files"))
        for name, source in found:
            _keep(interfaces, name, source)

    for folder in plugin_dirs:
        for entry in _list_folder(folder, "plugin", problems, unreadable):
            if entry.name.startswith(("_", ".")) or not entry.is_dir():
                continue
            if not is_customer_name(entry.name):
                problems.append(
                    Problem(entry.path, None, "name", f"plugin folder name {entry.name!r} is not a valid customer name; it is ignored")
                )
                continue
            customer_entries = _list_folder(entry.path, f"customer {entry.name!r} plugin", problems, unreadable)
            for name, source in _python_files(customer_entries, "plugin", problems):
                _keep(plugins, (entry.name, name), source)

    if previous is not None and unreadable:
        def lost(path: str) -> bool:
            return any(path.startswith(folder + os.sep) for folder in unreadable)

        for name, source in previous.interfaces.items():
            if name not in interfaces and lost(source.path):
                interfaces[name] = [source]
        for key, source in previous.plugins.items():
            if key not in plugins and lost(source.path):
                plugins[key] = [source]

    duplicates: dict[str | PluginKey, tuple[str, ...]] = {}
    for key, sources in [*interfaces.items(), *plugins.items()]:
        if len(sources) > 1:
            paths = tuple(s.path for s in sources)
            duplicates[key] = paths
            what = f"interface {key!r}" if isinstance(key, str) else f"customer {key[0]!r} plugin file for {key[1]!r}"
            for path in paths:
                problems.append(
                    Problem(
                        path,
                        None,
                        "duplicate",
                        f"{what} is defined in more than one folder: {', '.join(paths)}",
                        interface=key if isinstance(key, str) else key[1],
                        customer=None if isinstance(key, str) else key[0],
                    )
                )
    return Tree(
        interfaces={k: v[0] for k, v in interfaces.items()},
        plugins={k: v[0] for k, v in plugins.items()},
        duplicates=duplicates,
        problems=tuple(problems),
        unreadable=frozenset(unreadable),
        interface_dirs=interface_dirs,
    )


class _CompiledLoader(importlib.abc.InspectLoader):
    """Executes source we have already read and compiled.

    Reading the bytes ourselves means no ``__pycache__`` lookup: a file
    renamed over within the same second and with the same size can never be
    served from stale bytecode.
    """

    def __init__(self, code: CodeType, source: bytes) -> None:
        self._code = code
        self._source = source

    def get_code(self, fullname: str) -> CodeType:
        return self._code

    def get_source(self, fullname: str) -> str:
        return importlib.util.decode_source(self._source)

    def is_package(self, fullname: str) -> bool:
        return False


def module_name(kind: str, path: str) -> str:
    """A private module name no real module can have: prefix, stem and a digest of the path."""
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    digest = hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"_taskcatalog_{kind}_{stem}_{digest}"


def _error_line(tb: Any, path: str) -> int | None:
    """The deepest line of ``path`` in a traceback: where the import actually failed."""
    line = None
    for frame in traceback.extract_tb(tb):
        if frame.filename == path:
            line = frame.lineno
    return line


def import_file(path: str, kind: str, what: str) -> ModuleType:
    """Import ``path`` as a fresh module; any failure is a ``LoadError`` with file and line."""
    def fail(reason: str, line: int | None, cause: BaseException) -> LoadError:
        where = f"{path}:{line}" if line else path
        error = LoadError(f"cannot load {what} from {where}: {reason}", path=path, line=line)
        error.__cause__ = cause
        return error

    try:
        with open(path, "rb") as file:
            source = file.read()
    except OSError as exc:
        raise fail(exc.strerror or str(exc), None, exc) from exc
    try:
        code = compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:  # ValueError: NUL bytes on 3.11
        line = getattr(exc, "lineno", None)
        raise fail(f"{type(exc).__name__}: {getattr(exc, 'msg', exc)}", line, exc) from exc
    name = module_name(kind, path)
    loader = _CompiledLoader(code, source)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None  # always a spec when a loader is given
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get(name)
    sys.modules[name] = module
    try:
        loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        raise fail(f"{type(exc).__name__} at import: {exc}", _error_line(exc.__traceback__, path), exc) from exc
    finally:
        if saved is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = saved
    return module


def _line(target: Any) -> int | None:
    """The line a function or class starts on, without reading the file again."""
    code = getattr(target, "__code__", None)
    if code is not None:
        return code.co_firstlineno
    if isinstance(target, type):
        # Python 3.13 records the class statement's line; before that the
        # closest cheap answer is the first method of the class itself.
        first = vars(target).get("__firstlineno__")
        if first is not None:
            return first
        lines = [v.__code__.co_firstlineno for v in vars(target).values() if hasattr(v, "__code__")]
        return min(lines, default=None)
    return None


@dataclass(frozen=True, slots=True)
class Entrypoint:
    """One version of an interface, read once at load time."""

    interface: str
    version: int
    target: Callable[..., Any]  # a function, or a BaseTask subclass
    is_task: bool
    context_param: str  # the name of its first parameter, which a keyword must not reuse
    params: tuple[str, ...]  # keyword arguments it accepts, in order
    required: frozenset[str]
    var_kw: bool  # takes **kwargs: any keyword is accepted
    slots: Mapping[SlotId, SlotContract]
    deprecation: Deprecation | None
    signature: str
    doc: str | None
    path: str
    line: int | None

    @property
    def label(self) -> str:
        return f"{self.interface} v{self.version}"

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


def read_entrypoint(interface: str, version: int, target: Any, path: str) -> Entrypoint | str:
    """Describe an entrypoint, or say why it cannot be called."""
    is_task = isinstance(target, type) and issubclass(target, BaseTask)
    if isinstance(target, type) and not is_task:
        return "it is a class but not a BaseTask subclass"
    if not callable(target):
        return f"it is a {type(target).__name__}, not a function or a BaseTask subclass"
    function = target.execute if is_task else target
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        return f"its signature cannot be read: {exc}"
    params = list(signature.parameters.values())
    if is_task:
        params = params[1:]  # self
    P = inspect.Parameter
    if not params or params[0].kind not in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD, P.VAR_POSITIONAL):
        return "its first parameter must take the call context"
    rest = params[1:] if params[0].kind is not P.VAR_POSITIONAL else params
    stuck = [p.name for p in rest if p.kind is P.POSITIONAL_ONLY and p.default is P.empty]
    if stuck:
        return f"parameter(s) {', '.join(stuck)} are positional-only; arguments arrive by keyword"
    keyword = [p for p in rest if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)]
    shown = signature.replace(parameters=params)
    return Entrypoint(
        interface=interface,
        version=version,
        target=target,
        is_task=is_task,
        context_param=params[0].name,
        params=tuple(p.name for p in keyword),
        required=frozenset(p.name for p in keyword if p.default is P.empty),
        var_kw=any(p.kind is P.VAR_KEYWORD for p in rest),
        slots=dict(getattr(target, SLOTS_ATTR, {})),
        deprecation=getattr(target, DEPRECATION_ATTR, None),
        signature=f"{interface}_entrypoint_v{version}{shown}",
        doc=inspect.getdoc(target),
        path=path,
        line=_line(target),
    )


@dataclass(frozen=True, slots=True)
class LoadedInterface:
    name: str
    source: SourceFile
    entrypoints: Mapping[int, Entrypoint]
    problems: tuple[Problem, ...]


def read_interface(name: str, source: SourceFile) -> LoadedInterface:
    """Import ``interfaces/<name>.py`` and collect its entrypoints (raises LoadError)."""
    module = import_file(source.path, "interface", f"interface {name!r}")
    entrypoints: dict[int, Entrypoint] = {}
    problems: list[Problem] = []
    for attr, value in vars(module).items():
        version, reason = parse_entrypoint(attr, name)
        if version is not None:
            entry = read_entrypoint(name, version, value, source.path)
            if isinstance(entry, Entrypoint):
                entrypoints[version] = entry
                continue
            reason = f"entrypoint {attr} cannot be called: {entry}"
        if reason is not None:
            problems.append(Problem(source.path, _line(value), "entrypoint", reason, interface=name))
    if not entrypoints and not problems:
        problems.append(
            Problem(source.path, None, "entrypoint", f"interface {name!r} defines no {name}_entrypoint_v<N>", interface=name)
        )
    LOG.debug("loaded interface %s from %s: versions %s", name, source.path, sorted(entrypoints))
    return LoadedInterface(name, source, dict(sorted(entrypoints.items())), tuple(problems))


@dataclass(frozen=True, slots=True)
class LoadedPlugins:
    customer: str
    interface: str
    source: SourceFile
    plugins: tuple[Plugin, ...]  # sorted by (order, line)


def read_plugins(customer: str, interface: str, source: SourceFile) -> LoadedPlugins:
    """Import ``plugins/<customer>/<interface>.py`` and collect its ``@plugin_config`` functions."""
    module = import_file(source.path, "plugin", f"customer {customer!r} plugins for {interface!r}")
    found: dict[int, Plugin] = {}
    for attr, value in vars(module).items():
        try:
            config = getattr(value, PLUGIN_ATTR, None)
        except Exception:  # an object with a hostile __getattr__ is simply not a plugin
            continue
        if isinstance(config, PluginConfig) and id(value) not in found:
            name = getattr(value, "__qualname__", attr)
            found[id(value)] = Plugin(value, config, name, source.path, _line(value))
    plugins = sorted(found.values(), key=lambda p: (p.config.order, p.line or 0))
    LOG.debug("loaded %d plugin(s) of customer %s for %s from %s", len(plugins), customer, interface, source.path)
    return LoadedPlugins(customer, interface, source, tuple(plugins))
