"""The snapshot a call resolves against, and how a reload builds the next one.

A ``Snapshot`` is built from one scan of the folders (a ``Tree``) and is
never changed by a reload: ``Catalog.reload`` builds a new snapshot and swaps
it in with one assignment, so a call that started on the old one finishes on
it. Within a snapshot, files are imported lazily and the results memoised in
four tables, each a pure function of the files the snapshot stands for:

* ``interfaces``: name -> ``LoadedInterface`` (or ``Broken``)
* ``plugins``: (customer, name) -> ``LoadedPlugins`` (or ``Broken``)
* ``bindings``: (customer, name) -> ``Binding``: per version, per slot, the
  customer's plugins, contracts already checked
* ``routes``: (name, version as asked, customer) -> ``Route``: everything a
  call needs, so the call path is one dictionary lookup.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Mapping
from types import FunctionType
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from .deprecation import Deprecation
from .errors import (
    ArgumentError,
    CatalogError,
    ContractError,
    InterfaceNotFound,
    LoadError,
    PluginError,
    VersionNotFound,
    VersionRetired,
)
from .loading import (
    Entrypoint,
    LoadedInterface,
    LoadedPlugins,
    PluginKey,
    SourceFile,
    Tree,
    read_interface,
    read_plugins,
)
from .naming import check_interface_name
from .plugins import Plugin, SlotBinding, SlotId, fit_problems
from .results import Problem, ReloadReport

LOG = logging.getLogger("taskcatalog.catalog")

Pins = Mapping[str, Mapping[str, int]]  # customer -> interface -> version
CatalogErrorT = TypeVar("CatalogErrorT", bound=CatalogError)


@dataclass(frozen=True, slots=True)
class Broken:
    """A file that failed to load, kept so the failure is not retried per call."""

    source: SourceFile
    error: LoadError

    def problem(self, interface: str | None = None, customer: str | None = None) -> Problem:
        return Problem(self.source.path, self.error.line, "import", self.error.message, interface, customer)


def _again(error: CatalogError) -> CatalogError:
    """A fresh copy of a stored error: re-raising one instance would grow its traceback."""
    copy = type(error)(
        error.message,
        interface=error.interface,
        version=error.version,
        customer=error.customer,
        path=error.path,
        line=error.line,
    )
    copy.__cause__ = error.__cause__
    return copy


@dataclass(frozen=True, slots=True)
class Binding:
    """A customer's plugins bound to one interface: slot tables per version, or problems."""

    tables: Mapping[int, Mapping[SlotId, SlotBinding]]
    problems: tuple[Problem, ...] = ()
    error: CatalogError | None = None  # what a call raises when there are problems

    def slot_users(self) -> dict[tuple[int, SlotId], list[str]]:
        return {
            (version, slot_id): [p.name for p in binding.plugins]
            for version, table in self.tables.items()
            for slot_id, binding in table.items()
            if binding.plugins
        }


def _empty_tables(interface: LoadedInterface, customer: str | None) -> dict[int, dict[SlotId, SlotBinding]]:
    return {
        version: {sid: SlotBinding(contract, entry.label, customer) for sid, contract in entry.slots.items()}
        for version, entry in interface.entrypoints.items()
    }


def _plugin_problem(plugin: Plugin, kind: str, message: str, interface: str, customer: str) -> Problem:
    return Problem(plugin.path, plugin.line, kind, message, interface, customer)


def bind(interface: LoadedInterface, plugins: LoadedPlugins | Broken | None, customer: str | None) -> Binding:
    """Check a customer's plugin file against the interface and build its slot tables.

    Any problem fails the whole file closed: the customer's calls of this
    interface raise instead of running with a plugin silently left out.
    """
    name = interface.name
    if plugins is None:
        return Binding(_empty_tables(interface, customer))
    assert customer is not None
    if isinstance(plugins, Broken):
        problem = plugins.problem(name, customer)
        error = PluginError(
            f"customer {customer!r} cannot call {name!r}: its plugin file {plugins.error.message}",
            interface=name,
            customer=customer,
            path=plugins.source.path,
            line=plugins.error.line,
        )
        error.__cause__ = plugins.error
        return Binding({}, (problem,), error)

    entries = interface.entrypoints
    chosen: dict[int, dict[SlotId, list[Plugin]]] = {v: {s: [] for s in e.slots} for v, e in entries.items()}
    problems: list[Problem] = []
    for plugin in plugins.plugins:
        config = plugin.config
        slot_name = repr(config.slot)
        if config.versions is None:
            targets = sorted(v for v, e in entries.items() if config.slot in e.slots)
            if not targets:
                problems.append(_plugin_problem(
                    plugin, "contract",
                    f"plugin {plugin.name} fills slot {slot_name}, which no version of {name!r} declares",
                    name, customer))
        else:
            targets = sorted(config.versions)
        for version in targets:
            entry = entries.get(version)
            if entry is None:
                known = ", ".join(map(str, entries)) or "none"
                problems.append(_plugin_problem(
                    plugin, "contract",
                    f"plugin {plugin.name} targets {name} v{version}, which does not exist (versions: {known})",
                    name, customer))
                continue
            contract = entry.slots.get(config.slot)
            if contract is None:
                declared = ", ".join(repr(s) for s in entry.slots) or "none"
                problems.append(_plugin_problem(
                    plugin, "contract",
                    f"plugin {plugin.name} fills slot {slot_name}, which {entry.label} does not declare "
                    f"(declared: {declared})",
                    name, customer))
                continue
            reasons = fit_problems(plugin, contract)
            if reasons:
                problems.append(_plugin_problem(
                    plugin, "contract",
                    f"plugin {plugin.name} does not fit slot {slot_name} of {entry.label}, "
                    f"which calls plugins as {contract.signature()}: {'; '.join(reasons)}",
                    name, customer))
                continue
            chosen[version][config.slot].append(plugin)
    for version, slots in chosen.items():
        for slot_id, members in slots.items():
            if len(members) > 1 and not entries[version].slots[slot_id].many:
                names = " and ".join(p.where for p in members)
                problems.append(_plugin_problem(
                    members[1], "conflict",
                    f"plugins {names} both fill single slot {slot_id!r} of {entries[version].label}; "
                    "keep one, or declare the slot with many=True",
                    name, customer))
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more; run 'taskcatalog check')" if len(problems) > 1 else ""
        error = ContractError(
            f"customer {customer!r} cannot call {name!r}: {first.path}:{first.line}: {first.message}{more}",
            interface=name,
            customer=customer,
            path=first.path,
            line=first.line,
        )
        return Binding({}, tuple(problems), error)
    tables = {
        version: {
            sid: SlotBinding(contract, entries[version].label, customer, tuple(chosen[version][sid]))
            for sid, contract in entries[version].slots.items()
        }
        for version in entries
    }
    return Binding(tables)


@dataclass(frozen=True, slots=True)
class Route:
    """Everything a call of (interface, version, customer) needs, resolved once."""

    entrypoint: Entrypoint
    customer: str | None
    slots: Mapping[SlotId, SlotBinding]
    catalog: Any  # the Catalog, for ctx.call and ctx.db
    # Copied from the entrypoint so the call path reads one attribute each.
    interface: str = field(init=False)
    version: int = field(init=False)
    target: Callable[..., Any] = field(init=False)
    is_task: bool = field(init=False)
    params: frozenset[str] = field(init=False)
    required: frozenset[str] = field(init=False)
    var_kw: bool = field(init=False)
    # Whether the call path must check keyword arguments before calling. A
    # plain function does not need it: Python's own check raises TypeError
    # before the body runs, which the call path turns into ArgumentError.
    check_args: bool = field(init=False)
    deprecation: Deprecation | None = field(init=False)
    retire_at: float | None = field(init=False)

    def __post_init__(self) -> None:
        entry = self.entrypoint
        values = {
            "interface": entry.interface,
            "version": entry.version,
            "target": entry.target,
            "is_task": entry.is_task,
            "params": frozenset(entry.params),
            "required": entry.required,
            "var_kw": entry.var_kw,
            "check_args": entry.is_task
            or type(entry.target) is not FunctionType
            or hasattr(entry.target, "__wrapped__"),
            "deprecation": entry.deprecation,
            "retire_at": entry.deprecation.retire_at if entry.deprecation else None,
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def argument_error(self, kwargs: Mapping[str, Any]) -> ArgumentError:
        entry = self.entrypoint
        unexpected = sorted(set(kwargs) - self.params) if not self.var_kw else []
        if entry.context_param in kwargs and entry.context_param not in unexpected:
            unexpected.append(entry.context_param)  # it would collide with the context
        missing = sorted(self.required - set(kwargs))
        parts = []
        if unexpected:
            parts.append(f"unexpected keyword argument(s) {', '.join(map(repr, unexpected))}")
        if missing:
            parts.append(f"no value for required argument(s) {', '.join(map(repr, missing))}")
        accepted = ", ".join([*entry.params, *(["**kwargs"] if self.var_kw else [])]) or "no arguments"
        return self.error(ArgumentError, f"{entry.label} ({entry.where}): {'; '.join(parts)}; it accepts: {accepted}")

    def error(self, kind: type[CatalogErrorT], message: str) -> CatalogErrorT:
        """An error about this call, carrying its interface, version, customer, file and line."""
        entry = self.entrypoint
        return kind(
            message,
            interface=self.interface,
            version=self.version,
            customer=self.customer,
            path=entry.path,
            line=entry.line,
        )

    def warn_deprecated(self, stacklevel: int) -> None:
        assert self.deprecation is not None
        sunset = self.deprecation.sunset
        until = f" (retired after {sunset.isoformat()})" if sunset else ""
        message = f"{self.entrypoint.label} is deprecated{until}: {self.deprecation.message}"
        warnings.warn(message, DeprecationWarning, stacklevel=stacklevel + 1)
        LOG.warning("%s [customer=%s]", message, self.customer)


def _retired(entry: Entrypoint, now: float) -> bool:
    return entry.deprecation is not None and entry.deprecation.retire_at is not None and now >= entry.deprecation.retire_at


class Snapshot:
    """The catalog's state for one scan of the folders; see the module docstring."""

    def __init__(
        self,
        tree: Tree,
        pins: Pins,
        lock: threading.RLock,
        interfaces: dict[str, LoadedInterface | Broken] | None = None,
        plugins: dict[PluginKey, LoadedPlugins | Broken] | None = None,
        failures: dict[str, tuple[Any, tuple[Problem, ...]]] | None = None,
    ) -> None:
        self.tree = tree
        self.pins = pins
        self._lock = lock
        self.interfaces: dict[str, LoadedInterface | Broken] = interfaces or {}
        self.plugins: dict[PluginKey, LoadedPlugins | Broken] = plugins or {}
        # path -> (stamp, problem) for files whose newest version failed while
        # their last good version keeps running.
        self.failures: dict[str, tuple[Any, tuple[Problem, ...]]] = failures or {}
        self.bindings: dict[tuple[str | None, str], Binding] = {}
        self.routes: dict[tuple[Any, Any, str | None, type], Route] = {}  # filled by Catalog

    # -- loading, lazily -------------------------------------------------

    def interface(self, name: str) -> LoadedInterface:
        loaded = self.interfaces.get(name)
        if loaded is None:
            with self._lock:
                loaded = self.interfaces.get(name)
                if loaded is None:
                    loaded = self._load_interface(name)
        if isinstance(loaded, Broken):
            raise _again(loaded.error)
        return loaded

    def _load_interface(self, name: str) -> LoadedInterface | Broken:
        source = self.tree.interfaces.get(name)
        if source is None:
            check_interface_name(name)
            known = sorted(self.tree.interfaces)
            listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "") if known else "none"
            folders = ", ".join(self.tree.interface_dirs) or "none"
            raise InterfaceNotFound(
                f"no interface {name!r} in the catalog (interfaces: {listed}; folders: {folders})", interface=name
            )
        loaded: LoadedInterface | Broken
        if name in self.tree.duplicates:
            paths = ", ".join(self.tree.duplicates[name])
            error = LoadError(
                f"interface {name!r} is defined in more than one folder ({paths}); keep one",
                interface=name,
                path=source.path,
            )
            loaded = Broken(source, error)
        else:
            try:
                loaded = read_interface(name, source)
            except LoadError as exc:
                exc.interface = name
                LOG.error("%s", exc)
                loaded = Broken(source, exc)
        self.interfaces[name] = loaded
        return loaded

    def _load_plugins(self, key: PluginKey) -> LoadedPlugins | Broken | None:
        loaded = self.plugins.get(key)
        if loaded is not None:
            return loaded
        source = self.tree.plugins.get(key)
        if source is None:
            return None
        customer, name = key
        if key in self.tree.duplicates:
            paths = ", ".join(self.tree.duplicates[key])
            loaded = Broken(source, LoadError(
                f"for {name!r} is in more than one plugin folder ({paths}); keep one",
                interface=name, customer=customer, path=source.path))
        else:
            try:
                loaded = read_plugins(customer, name, source)
            except LoadError as exc:
                exc.interface, exc.customer = name, customer
                LOG.error("%s", exc)
                loaded = Broken(source, exc)
        self.plugins[key] = loaded
        return loaded

    def binding(self, customer: str | None, name: str) -> Binding:
        key = (customer, name)
        found = self.bindings.get(key)
        if found is None:
            interface = self.interface(name)
            with self._lock:
                found = self.bindings.get(key)
                if found is None:
                    plugins = self._load_plugins((customer, name)) if customer is not None else None
                    found = bind(interface, plugins, customer)
                    for problem in found.problems:
                        LOG.error("%s", problem)
                    self.bindings[key] = found
        return found

    # -- resolving a call ------------------------------------------------

    def route(self, name: str, version: Any, customer: str | None, catalog: Any) -> Route:
        """Resolve the route of a call; raises the call's CatalogError."""
        if not isinstance(name, str):
            check_interface_name(name)
        interface = self.interface(name)
        entry = self._entrypoint(interface, version, customer)
        binding = self.binding(customer, name)
        if binding.error is not None:
            raise _again(binding.error)
        return Route(entry, customer, binding.tables[entry.version], catalog)

    def _entrypoint(self, interface: LoadedInterface, version: Any, customer: str | None) -> Entrypoint:
        name, entries, now = interface.name, interface.entrypoints, time.time()
        versions = ", ".join(map(str, entries)) or "none"
        pinned = False
        if version is None:
            version = self.pins.get(customer, {}).get(name) if customer is not None else None
            pinned = version is not None
            if version is None:
                version = "latest"
        if version == "latest":
            live = [v for v, e in entries.items() if not _retired(e, now)]
            if live:
                return entries[live[-1]]
            if entries:
                raise VersionRetired(f"every version of {name!r} is retired (versions: {versions})", interface=name)
            raise VersionNotFound(
                f"interface {name!r} has no usable version ({interface.source.path}; run 'taskcatalog check')",
                interface=name, path=interface.source.path)
        if isinstance(version, bool) or not isinstance(version, int):
            raise ArgumentError(
                f"version must be an int, 'latest' or None, not {version!r} (interface {name!r})", interface=name
            )
        entry = entries.get(version)
        if entry is None:
            why = f" (customer {customer!r} is pinned to it)" if pinned else ""
            raise VersionNotFound(
                f"interface {name!r} has no version {version}{why}; versions: {versions} ({interface.source.path})",
                interface=name, version=version, customer=customer, path=interface.source.path)
        if _retired(entry, now):
            assert entry.deprecation is not None and entry.deprecation.sunset is not None
            raise VersionRetired(
                f"{entry.label} was retired after {entry.deprecation.sunset.isoformat()}: "
                f"{entry.deprecation.message} ({entry.where})",
                interface=name, version=version, customer=customer, path=entry.path, line=entry.line)
        return entry

    # -- looking at everything -------------------------------------------

    def load_all(self) -> None:
        for name in self.tree.interfaces:
            try:
                self.interface(name)
            except CatalogError:
                pass
        for customer, name in self.tree.plugins:
            if name in self.tree.interfaces:
                try:
                    self.binding(customer, name)
                except CatalogError:
                    pass

    def problems(self) -> list[Problem]:
        """Every problem of every file; loads everything first."""
        self.load_all()
        found: list[Problem] = list(self.tree.problems)
        for name, loaded in self.interfaces.items():
            found.extend(loaded.problems if isinstance(loaded, LoadedInterface) else [loaded.problem(name)])
        for binding in self.bindings.values():
            found.extend(binding.problems)
        for (customer, name), source in self.tree.plugins.items():
            if name not in self.tree.interfaces:
                found.append(Problem(
                    source.path, None, "orphan",
                    f"customer {customer!r} has plugins for {name!r}, which is not an interface of the catalog",
                    name, customer))
        for _, problems in self.failures.values():
            found.extend(problems)
        # A file in two folders also fails to load; the tree already said why.
        found = [p for p in found if p.kind != "import" or not self._duplicated(p)]
        unique = {(p.path, p.line, p.kind, p.message): p for p in found}
        return sorted(unique.values(), key=lambda p: (p.path, p.line or 0, p.kind, p.message))

    def _duplicated(self, problem: Problem) -> bool:
        key = problem.interface if problem.customer is None else (problem.customer, problem.interface)
        return key in self.tree.duplicates


def _failure(key: str | PluginKey, broken: Broken) -> Problem:
    if isinstance(key, str):
        return broken.problem(key)
    customer, name = key
    return broken.problem(name, customer)


def reloaded(old: Snapshot, tree: Tree) -> tuple[Snapshot, ReloadReport]:
    """Build the snapshot for a new scan from the old one, and say what changed.

    Unchanged files keep their loaded modules; files that are new or changed
    are imported now. A changed file whose new version fails keeps its last
    good version (recorded in ``failures`` until the file changes again, or,
    for a plugin file, until its interface changes).
    """
    before, after = old.tree.files(), tree.files()
    report = ReloadReport(
        added=sorted(p for p in after if p not in before),
        changed=sorted(p for p in after if p in before and before[p].stamp != after[p].stamp),
        removed=sorted(p for p in before if p not in after),
    )
    fresh = set(report.added) | set(report.changed)
    new = Snapshot(tree, old.pins, old._lock)

    def settle(key: str | PluginKey, source: SourceFile, retry: bool) -> None:
        """Carry the old state of one file over, or load its new version, or keep the last good one."""
        table: dict[Any, Any] = new.interfaces if isinstance(key, str) else new.plugins
        previous = (old.interfaces if isinstance(key, str) else old.plugins).get(key)
        failure = old.failures.get(source.path)
        if failure is not None and failure[0] == source.stamp and previous is not None and not retry:
            table[key] = previous  # this version already failed; the last good one keeps running
            new.failures[source.path] = failure
            return
        if previous is not None and previous.source == source and not retry:
            table[key] = previous
            return
        if previous is None and source.path not in fresh:
            return  # never loaded and unchanged: it stays lazy
        loaded = new._load_interface(key) if isinstance(key, str) else new._load_plugins(key)
        if not isinstance(loaded, Broken):
            table[key] = loaded
            return
        problem = _failure(key, loaded)
        report.failed.append(problem)
        if isinstance(previous, (LoadedInterface, LoadedPlugins)) and previous.source.path == source.path:
            LOG.error("reload: %s; keeping the last good version", problem)
            new.failures[source.path] = (source.stamp, (problem,))
            table[key] = previous
        else:
            table[key] = loaded

    with old._lock:
        for name, source in tree.interfaces.items():
            settle(name, source, retry=False)
        for key, source in tree.plugins.items():
            interface = tree.interfaces.get(key[1])
            # A plugin file that failed against the old interface may fit the new one.
            retry = interface is not None and interface.path in fresh and source.path in old.failures
            settle(key, source, retry)
        # A plugin file whose new version breaks a contract also keeps its last
        # good version, and a changed interface may break plugins that did not
        # change: bind every loaded pair the reload touched.
        for key, loaded in list(new.plugins.items()):
            customer, name = key
            interface = new.interfaces.get(name)
            if not isinstance(interface, LoadedInterface) or isinstance(loaded, Broken):
                continue
            if loaded.source.path not in fresh and interface.source.path not in fresh:
                continue
            binding = bind(interface, loaded, customer)
            if not binding.problems:
                continue
            report.failed.extend(binding.problems)
            previous = old.plugins.get(key)
            if isinstance(previous, LoadedPlugins) and previous is not loaded and not bind(interface, previous, customer).problems:
                LOG.error("reload: %s; keeping the last good version", binding.problems[0])
                new.plugins[key] = previous
                new.failures[loaded.source.path] = (loaded.source.stamp, binding.problems)
    report.failed.extend(p for p in tree.problems if p not in old.tree.problems)
    for verb, paths in (("added", report.added), ("changed", report.changed), ("removed", report.removed)):
        for path in paths:
            LOG.info("reload: %s %s", verb, path)
    return new, report
