"""Importing one interface or plugin file by path, and reading what it defines.

A file is imported when a call first needs it (or by ``check()`` and
``reload()``); the outcome is a ``LoadedInterface`` / ``LoadedPlugins``, or
``Broken`` with the ``LoadError`` that every call of it raises. Files are imported with ``importlib.util.spec_from_file_location`` under a
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import CodeType, ModuleType, TracebackType
from typing import Any

from .deprecation import DEPRECATION_ATTR, Deprecation
from .errors import LoadError, location
from .naming import parse_entrypoint
from .plugins import PLUGIN_ATTR, SLOTS_ATTR, Plugin, PluginConfig, SlotContract, SlotId
from .results import Problem
from .scanning import PluginKey, SourceFile, Tree
from .tasks import BaseTask

__all__ = [
    "Broken",
    "Entrypoint",
    "LoadedInterface",
    "LoadedPlugins",
    "import_file",
    "load_interface",
    "load_plugins",
]

LOG = logging.getLogger("taskcatalog.loading")


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


def _error_line(tb: TracebackType | None, path: str) -> int | None:
    """The deepest line of ``path`` in a traceback: where the import actually failed."""
    line = None
    for frame in traceback.extract_tb(tb):
        if frame.filename == path:
            line = frame.lineno
    return line


def import_file(path: str, kind: str, what: str) -> ModuleType:
    """Import ``path`` as a fresh module; any failure is a ``LoadError`` with file and line."""
    def fail(reason: str, line: int | None, cause: BaseException) -> LoadError:
        error = LoadError(f"cannot load {what} from {location(path, line)}: {reason}", path=path, line=line)
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
    if isinstance(code, CodeType):
        return code.co_firstlineno
    if isinstance(target, type):
        # Python 3.13 records the class statement's line; before that the
        # closest cheap answer is the first method of the class itself.
        first = vars(target).get("__firstlineno__")
        if isinstance(first, int):
            return first
        lines = [v.__code__.co_firstlineno for v in vars(target).values() if isinstance(getattr(v, "__code__", None), CodeType)]
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
        return location(self.path, self.line)

    def retired(self, now: float) -> bool:
        """True when this version is past its sunset at POSIX time ``now``."""
        return self.deprecation is not None and self.deprecation.retired(now)


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


@dataclass(frozen=True, slots=True)
class Broken:
    """A file that failed to load, kept so that the failure is not retried on every call."""

    source: SourceFile
    error: LoadError

    def problem(self, interface: str | None = None, customer: str | None = None) -> Problem:
        return Problem(self.source.path, self.error.line, "import", self.error.message, interface, customer)


def load_interface(tree: Tree, name: str) -> LoadedInterface | Broken:
    """Import interface ``name`` of ``tree`` (which must list it); a failure is ``Broken``."""
    source = tree.interfaces[name]
    if name in tree.duplicates:
        paths = ", ".join(tree.duplicates[name])
        error = LoadError(
            f"interface {name!r} is defined in more than one folder ({paths}); keep one",
            interface=name,
            path=source.path,
        )
        return Broken(source, error)
    try:
        return read_interface(name, source)
    except LoadError as exc:
        exc.interface = name
        LOG.error("%s", exc)
        return Broken(source, exc)


def load_plugins(tree: Tree, key: PluginKey) -> LoadedPlugins | Broken:
    """Import the plugin file ``key`` (customer, interface) of ``tree``; a failure is ``Broken``."""
    source = tree.plugins[key]
    customer, name = key
    if key in tree.duplicates:
        paths = ", ".join(tree.duplicates[key])
        error = LoadError(
            f"for {name!r} is in more than one plugin folder ({paths}); keep one",
            interface=name,
            customer=customer,
            path=source.path,
        )
        return Broken(source, error)
    try:
        return read_plugins(customer, name, source)
    except LoadError as exc:
        exc.interface, exc.customer = name, customer
        LOG.error("%s", exc)
        return Broken(source, exc)
