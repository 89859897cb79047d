"""The snapshot a call resolves against: one scan of the folders, loaded lazily.

A ``Snapshot`` stands for one ``Tree`` and never changes what it stands
for: ``Catalog.reload`` builds a new snapshot (``reloading.py``) and swaps it
in with one assignment, so a call that started on the old one finishes on it.
Within a snapshot, files are imported when first needed and the outcome is
memoised in tables the snapshot alone writes, each a pure function of the
files it stands for:

* interfaces: name -> ``LoadedInterface`` (or ``Broken``)
* plugins: (customer, name) -> ``LoadedPlugins`` (or ``Broken``)
* bindings: (customer, name) -> ``Binding``: per version, per slot, the
  customer's plugins, contracts already checked
* routes: (name, version as asked, customer, type of version) -> ``Route``:
  everything a call needs, so the call path is one dictionary lookup.

Each file has a lock of its own: different files import at the same time,
and one file is imported once however many calls want it first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .binding import Binding, bind
from .errors import ArgumentError, CatalogError, InterfaceNotFound, VersionNotFound, VersionRetired
from .loading import Broken, Entrypoint, LoadedInterface, LoadedPlugins, load_interface, load_plugins
from .naming import check_interface_name
from .results import Problem
from .routes import CallHost, Route, call_error, rescope
from .scanning import FileKey, PluginKey, Stamp, Tree
from .slots import timed_table
from .telemetry import Buffers

__all__ = ["Snapshot", "Failure", "Pins", "RouteKey"]

LOG = logging.getLogger("taskcatalog.catalog")

Pins = Mapping[str, Mapping[str, int]]  # customer -> interface -> version
RouteKey = tuple[Any, Any, Any, type]  # (name, version as asked, customer, type of version)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why the newest version of a file is not the one running (its last good version is).

    ``transient``: the file could not be read (a file system failure), so the
    next reload tries it again even if its stamp is the same.
    """

    stamp: Stamp
    problems: tuple[Problem, ...]
    transient: bool = False


Failures = Mapping[str, Failure]  # path -> Failure


class Snapshot:
    """The catalog's state for one scan of the folders; see the module docstring.

    ``interfaces``, ``plugins`` and ``failures`` may be given from a previous
    snapshot (what a reload carries over); everything else is loaded lazily.
    """

    def __init__(
        self,
        tree: Tree,
        pins: Pins,
        *,
        interfaces: Mapping[str, LoadedInterface | Broken] | None = None,
        plugins: Mapping[PluginKey, LoadedPlugins | Broken] | None = None,
        failures: Failures | None = None,
        recording: Buffers | None = None,
    ) -> None:
        self.tree = tree
        self.pins = pins
        self.recording = recording  # telemetry: where routes record plugin runs (None: not recorded)
        self._interfaces: dict[str, LoadedInterface | Broken] = dict(interfaces or {})
        self._plugins: dict[PluginKey, LoadedPlugins | Broken] = dict(plugins or {})
        self._failures: dict[str, Failure] = dict(failures or {})
        self._bindings: dict[tuple[str | None, str], Binding] = {}
        self._routes: dict[RouteKey, Route] = {}
        self._locks: dict[FileKey, threading.RLock] = {}

    # Read-only views of the memo tables, for the catalog's call path and for
    # the next reload; only the snapshot's own methods write them.

    @property
    def interfaces(self) -> Mapping[str, LoadedInterface | Broken]:
        return self._interfaces

    @property
    def plugins(self) -> Mapping[PluginKey, LoadedPlugins | Broken]:
        return self._plugins

    @property
    def failures(self) -> Failures:
        return self._failures

    @property
    def routes(self) -> Mapping[RouteKey, Route]:
        return self._routes

    # -- loading, lazily -------------------------------------------------

    def _lock(self, key: FileKey) -> threading.RLock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks.setdefault(key, threading.RLock())  # atomic: one lock per key wins
        return lock

    def interface(self, name: str) -> LoadedInterface:
        """The loaded interface ``name``; raises its LoadError, or InterfaceNotFound."""
        loaded = self._interfaces.get(name)
        if loaded is None:
            loaded = self._load_interface(name)
        if isinstance(loaded, Broken):
            raise rescope(loaded.error, interface=name, version=None, customer=None)
        return loaded

    def _load_interface(self, name: str) -> LoadedInterface | Broken:
        if name not in self.tree.interfaces:
            check_interface_name(name)
            known = sorted(self.tree.interfaces)
            listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "") if known else "none"
            folders = ", ".join(self.tree.interface_dirs) or "none"
            raise InterfaceNotFound(
                f"no interface {name!r} in the catalog (interfaces: {listed}; folders: {folders})", interface=name
            )
        with self._lock(name):
            loaded = self._interfaces.get(name)
            if loaded is None:
                loaded = self._interfaces[name] = load_interface(self.tree, name)
        return loaded

    def plugin_file(self, key: PluginKey) -> LoadedPlugins | Broken | None:
        """A customer's loaded plugin file for an interface; None when there is none."""
        loaded = self._plugins.get(key)
        if loaded is not None or key not in self.tree.plugins:
            return loaded
        with self._lock(key):
            loaded = self._plugins.get(key)
            if loaded is None:
                loaded = self._plugins[key] = load_plugins(self.tree, key)
        return loaded

    def binding(self, customer: str | None, name: str) -> Binding:
        """The customer's plugins bound to interface ``name`` (checked once, then memoised)."""
        key = (customer, name)
        found = self._bindings.get(key)
        if found is None:
            interface = self.interface(name)
            plugins = self.plugin_file((customer, name)) if customer is not None else None
            found = bind(interface, plugins, customer)
            kept = self._bindings.setdefault(key, found)
            if kept is found:  # the thread that stored it logs it
                for problem in found.problems:
                    LOG.error("%s", problem)
            found = kept
        return found

    # -- resolving a call ------------------------------------------------

    def resolve(self, key: RouteKey, host: CallHost) -> Route:
        """The route of a call, memoised; raises the call's CatalogError.

        ``key`` is what the call path looks routes up by; the customer name
        in it has been validated by the caller.
        """
        name, version, customer, _ = key
        if not isinstance(name, str):
            check_interface_name(name)
        try:
            interface = self.interface(name)
            entry = self._entrypoint(interface, version, customer)
        except CatalogError as exc:
            asked = version if type(version) is int else None
            raise rescope(exc, interface=name, version=asked, customer=customer) from None
        binding = self.binding(customer, name)
        if binding.error is not None:
            error = binding.error
            raise call_error(
                type(error),
                error.message,
                interface=name,
                version=entry.version,
                customer=customer,
                path=error.path,
                line=error.line,
                cause=error.__cause__,
            )
        table = binding.tables[entry.version]
        recording = self.recording
        if recording is None:
            route = Route(entry, customer, table, host)
        else:
            recorded_as = recording.call_keys(entry.interface, entry.version, customer)
            route = Route(entry, customer, timed_table(table, recording), host, recorded_as)
        return self._routes.setdefault(key, route)

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
            live = [v for v, e in entries.items() if not e.retired(now)]
            if live:
                return entries[live[-1]]
            if entries:
                raise VersionRetired(f"every version of {name!r} is retired (versions: {versions})", interface=name)
            raise VersionNotFound(
                f"interface {name!r} has no usable version ({interface.source.path}; run 'taskcatalog check')",
                interface=name,
                path=interface.source.path,
            )
        if isinstance(version, bool) or not isinstance(version, int):
            raise ArgumentError(
                f"version must be an int, 'latest' or None, not {version!r} (interface {name!r})", interface=name
            )
        entry = entries.get(version)
        if entry is None:
            why = f" (customer {customer!r} is pinned to it)" if pinned else ""
            raise VersionNotFound(
                f"interface {name!r} has no version {version}{why}; versions: {versions} ({interface.source.path})",
                interface=name,
                version=version,
                path=interface.source.path,
            )
        if entry.retired(now):
            assert entry.deprecation is not None and entry.deprecation.sunset is not None
            raise VersionRetired(
                f"{entry.label} was retired after {entry.deprecation.sunset.isoformat()}: "
                f"{entry.deprecation.message} ({entry.where})",
                interface=name,
                version=version,
                path=entry.path,
                line=entry.line,
            )
        return entry

    # -- looking at everything -------------------------------------------

    def load_all(self) -> None:
        """Import every file and bind every plugin file; failures stay in the tables."""
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
        for name, loaded in list(self._interfaces.items()):
            found.extend(loaded.problems if isinstance(loaded, LoadedInterface) else [loaded.problem(name)])
        for binding in list(self._bindings.values()):
            found.extend(binding.problems)
        for (customer, name), source in self.tree.plugins.items():
            if name not in self.tree.interfaces:
                found.append(Problem(
                    source.path, None, "orphan",
                    f"customer {customer!r} has plugins for {name!r}, which is not an interface of the catalog",
                    name, customer))
        for failure in self._failures.values():
            found.extend(failure.problems)
        # A file in two folders also fails to load; the tree already said why.
        found = [p for p in found if p.kind != "import" or not self._duplicated(p)]
        unique = {(p.path, p.line, p.kind, p.message): p for p in found}
        return sorted(unique.values(), key=lambda p: (p.path, p.line or 0, p.kind, p.message))

    def _duplicated(self, problem: Problem) -> bool:
        key: FileKey | None
        if problem.interface is None:
            return False
        key = problem.interface if problem.customer is None else (problem.customer, problem.interface)
        return key in self.tree.duplicates
