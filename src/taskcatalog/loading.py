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
import stat
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import CodeType, FunctionType, ModuleType, TracebackType
from typing import Any, TypeVar

from .deprecation import DEPRECATION_ATTR, Deprecation
from .errors import LoadError, brief, location
from .naming import parse_entrypoint
from .plugins import PLUGIN_ATTR, SLOTS_ATTR, Plugin, PluginConfig, SlotContract, SlotId
from .results import Problem
from .scanning import FileKey, PluginKey, SourceFile, Tree
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


def _kind_of(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a regular file"


def read_source(path: str) -> bytes:
    """The bytes of a regular file; OSError for anything else, without blocking.

    ``O_NONBLOCK`` makes opening a FIFO return at once instead of waiting for
    a writer; ``fstat`` on the open file then refuses whatever is not a
    regular file, however the path changed since the scan.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"it is {_kind_of(mode)}, not a regular file")
        with open(fd, "rb", closefd=False) as file:
            return file.read()
    finally:
        os.close(fd)


class NotRegularFile(Exception):
    """The path names something that is not a regular file (a FIFO, a folder, ...)."""


def import_file(path: str, kind: str, what: str) -> ModuleType:
    """Import ``path`` as a fresh module; any failure is a ``LoadError`` with file and line.

    Everything a file can raise while it is compiled or executed counts,
    ``SystemExit``, ``RecursionError`` and bare ``BaseException`` included:
    only ``KeyboardInterrupt`` (the person at the terminal) gets through.
    """
    def fail(reason: str, line: int | None, cause: BaseException) -> LoadError:
        error = LoadError(f"cannot load {what} from {location(path, line)}: {reason}", path=path, line=line)
        error.__cause__ = cause
        return error

    try:
        source = read_source(path)
    except NotRegularFile as exc:
        raise fail(str(exc), None, exc) from exc
    except OSError as exc:
        raise fail(exc.strerror or str(exc), None, exc) from exc
    try:
        code = compile(source, path, "exec", dont_inherit=True)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SyntaxError, ValueError (NUL bytes on 3.11), RecursionError, MemoryError
        line = getattr(exc, "lineno", None)
        raise fail(f"{type(exc).__name__}: {brief(getattr(exc, 'msg', exc)) or 'too complex to compile'}", line, exc) from exc
    name = module_name(kind, path)
    loader = _CompiledLoader(code, source)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None  # always a spec when a loader is given
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get(name)
    sys.modules[name] = module
    try:
        loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        reason = f"{type(exc).__name__} at import: {brief(exc)}"
        raise fail(reason, _error_line(exc.__traceback__, path), exc) from exc
    finally:
        if saved is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = saved
    return module


def _line(target: Any) -> int | None:
    """The line a function or class starts on, without reading the file again (None if unknown)."""
    try:
        return _first_line(target)
    except KeyboardInterrupt:
        raise
    except BaseException:  # a hostile object: its line is not worth a failure
        return None


def _first_line(target: Any) -> int | None:
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
    check_args: bool  # the call path checks keyword arguments itself (see read_entrypoint)
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


def not_synchronous(function: Any) -> str | None:
    """Why ``function`` cannot run as an ordinary call, or None: the catalog does not await."""
    if inspect.isasyncgenfunction(function):
        return "an async generator function"
    if inspect.iscoroutinefunction(function):
        return "a coroutine function (async def)"
    if inspect.isgeneratorfunction(function):
        return "a generator function"
    return None


def read_entrypoint(interface: str, version: int, target: Any, path: str) -> Entrypoint | str:
    """Describe an entrypoint, or say why it cannot be called."""
    is_task = isinstance(target, type) and issubclass(target, BaseTask)
    if isinstance(target, type) and not is_task:
        return "it is a class but not a BaseTask subclass"
    if not callable(target):
        return f"it is a {type(target).__name__}, not a function or a BaseTask subclass"
    function = target.execute if is_task else target
    methods = ("is_actionable", "execute") if is_task else ()
    for kind, candidate in [(f"its {m}", getattr(target, m)) for m in methods] or [("it", target)]:
        what = not_synchronous(candidate)
        if what is not None:
            return f"{kind} is {what}; async is not supported yet"
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
        # Python's own binding checks a plain function's arguments before its
        # body runs; anything else (a task, a wrapper) is checked by the catalog.
        check_args=is_task or type(target) is not FunctionType or hasattr(target, "__wrapped__"),
        slots=dict(getattr(target, SLOTS_ATTR, {})),
        deprecation=deprecation if isinstance(deprecation := getattr(target, DEPRECATION_ATTR, None), Deprecation) else None,
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
            try:
                entry = read_entrypoint(name, version, value, source.path)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # reading it ran its code: a __getattr__, a __signature__
                entry = f"reading it raised {type(exc).__name__}: {brief(exc)}"
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
    module = import_file(source.path, "plugin", f"customer {customer!r} plugin file for {interface!r}")
    found: dict[int, Plugin] = {}
    for attr, value in vars(module).items():
        try:
            config = getattr(value, PLUGIN_ATTR, None)
            if not isinstance(config, PluginConfig) or id(value) in found:
                continue
            name = getattr(value, "__qualname__", attr)
        except KeyboardInterrupt:
            raise
        except BaseException:  # an object with a hostile __getattr__ is simply not a plugin
            continue
        found[id(value)] = Plugin(value, config, name if isinstance(name, str) else attr, source.path, _line(value))
    plugins = sorted(found.values(), key=lambda p: (p.config.order, p.line or 0))
    LOG.debug("loaded %d plugin(s) of customer %s for %s from %s", len(plugins), customer, interface, source.path)
    return LoadedPlugins(customer, interface, source, tuple(plugins))


@dataclass(frozen=True, slots=True)
class Broken:
    """A file that failed to load, kept so that the failure is not retried on every call.

    ``transient`` marks a failure of the file system rather than of the
    file's content (it vanished, could not be read): the next reload tries
    the file again even when its stamp did not change.
    """

    source: SourceFile
    error: LoadError
    transient: bool = False

    def problem(self, interface: str | None = None, customer: str | None = None) -> Problem:
        return Problem(self.source.path, self.error.line, "import", self.error.message, interface, customer)


T = TypeVar("T")


def _guarded(
    source: SourceFile, what: str, read: Callable[[], T], interface: str, customer: str | None
) -> T | Broken:
    """``read()``, or ``Broken`` for whatever it raised (only KeyboardInterrupt gets through).

    Reading what a module defines runs code too (a ``__getattr__``, a
    property, a signature), so it is guarded like the import itself.
    """
    try:
        return read()
    except LoadError as exc:
        error = exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        error = LoadError(
            f"cannot load {what} from {source.path}: {type(exc).__name__} while reading what it defines: {brief(exc)}",
            path=source.path,
        )
        error.__cause__ = exc
    error.interface, error.customer = interface, customer
    LOG.error("%s", error)
    return Broken(source, error, transient=isinstance(error.__cause__, OSError))


def _duplicate(tree: Tree, key: FileKey, source: SourceFile, what: str, customer: str | None) -> Broken | None:
    paths = tree.duplicates.get(key)
    if paths is None:
        return None
    interface = key if isinstance(key, str) else key[1]
    error = LoadError(
        f"{what} is defined in more than one folder ({', '.join(paths)}); keep one",
        interface=interface,
        customer=customer,
        path=source.path,
    )
    return Broken(source, error)


def load_interface(tree: Tree, name: str) -> LoadedInterface | Broken:
    """Import interface ``name`` of ``tree`` (which must list it); a failure is ``Broken``."""
    source = tree.interfaces[name]
    what = f"interface {name!r}"
    duplicate = _duplicate(tree, name, source, what, None)
    return duplicate if duplicate is not None else _guarded(source, what, lambda: read_interface(name, source), name, None)


def load_plugins(tree: Tree, key: PluginKey) -> LoadedPlugins | Broken:
    """Import the plugin file ``key`` (customer, interface) of ``tree``; a failure is ``Broken``."""
    source = tree.plugins[key]
    customer, name = key
    what = f"customer {customer!r} plugin file for {name!r}"
    duplicate = _duplicate(tree, key, source, what, customer)
    if duplicate is not None:
        return duplicate
    return _guarded(source, what, lambda: read_plugins(customer, name, source), name, customer)
