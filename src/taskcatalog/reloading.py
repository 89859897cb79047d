"""Building the next snapshot from the previous one and a new scan: what a reload does.

Unchanged files keep their loaded modules; files that are new or changed are
imported now. A changed file whose new version fails keeps its last good
version running, recorded as a ``Failure`` until the file changes again (or,
for a plugin file, until its interface changes). "Fails" includes a new
version that defines nothing usable (a file truncated mid-deploy): deleting
the file is how an interface or a customer's plugins are removed.

A failure of the file system rather than of the content (the file vanished
or could not be read) is tried again at every reload until it loads, and
the report lists it as ``recovered`` when it does. The old snapshot is only
read; the result is a fresh ``Snapshot`` and a ``ReloadReport``.
"""

from __future__ import annotations

import logging
from typing import Any

from .binding import bind
from .loading import Broken, LoadedInterface, LoadedPlugins, load_interface, load_plugins
from .results import Problem, ReloadReport
from .scanning import FileKey, PluginKey, SourceFile, Tree
from .snapshot import Failure, Snapshot

__all__ = ["reloaded"]

LOG = logging.getLogger("taskcatalog.catalog")

Loaded = LoadedInterface | LoadedPlugins | Broken


def _broken_problem(key: FileKey, broken: Broken) -> Problem:
    if isinstance(key, str):
        return broken.problem(key)
    customer, name = key
    return broken.problem(name, customer)


def _emptied(loaded: Loaded, previous: Loaded | None) -> tuple[Problem, ...]:
    """The problems of a new version that defines nothing usable where the last one did."""
    if isinstance(loaded, LoadedInterface) and isinstance(previous, LoadedInterface):
        if not loaded.entrypoints and previous.entrypoints:
            return loaded.problems
    if isinstance(loaded, LoadedPlugins) and isinstance(previous, LoadedPlugins):
        if not loaded.plugins and previous.plugins:
            return (Problem(
                loaded.source.path, None, "contract",
                f"customer {loaded.customer!r} plugin file for {loaded.interface!r} defines no @plugin_config "
                "function any more; the last good version keeps running (delete the file to remove the "
                "customer's plugins)",
                loaded.interface, loaded.customer,
            ),)
    return ()


def reloaded(old: Snapshot, tree: Tree) -> tuple[Snapshot, ReloadReport]:
    """The snapshot for ``tree``, built from ``old``, and what changed between them."""
    before, after = old.tree.files(), tree.files()
    report = ReloadReport(
        added=sorted(p for p in after if p not in before),
        changed=sorted(p for p in after if p in before and before[p].stamp != after[p].stamp),
        removed=sorted(p for p in before if p not in after),
    )
    fresh = set(report.added) | set(report.changed)
    interfaces: dict[str, LoadedInterface | Broken] = {}
    plugins: dict[PluginKey, LoadedPlugins | Broken] = {}
    failures: dict[str, Failure] = {}

    def settle(key: FileKey, source: SourceFile, retry: bool) -> None:
        """Carry the old state of one file over, or load its new version, or keep the last good one."""
        table: dict[Any, Any] = interfaces if isinstance(key, str) else plugins
        previous: Loaded | None = old.interfaces.get(key) if isinstance(key, str) else old.plugins.get(key)
        failure = old.failures.get(source.path)
        unreadable = (isinstance(previous, Broken) and previous.transient) or (failure is not None and failure.transient)
        if not (retry or unreadable):
            if failure is not None and failure.stamp == source.stamp and previous is not None:
                table[key] = previous  # this version already failed; the last good one keeps running
                failures[source.path] = failure
                return
            if previous is not None and previous.source == source:
                table[key] = previous
                return
            if previous is None and source.path not in fresh:
                return  # never loaded and unchanged: it stays lazy
        loaded: Loaded = load_interface(tree, key) if isinstance(key, str) else load_plugins(tree, key)
        good = previous if isinstance(previous, (LoadedInterface, LoadedPlugins)) else None
        problems = (_broken_problem(key, loaded),) if isinstance(loaded, Broken) else _emptied(loaded, good)
        if not problems:
            table[key] = loaded
            if unreadable and source.path not in fresh:
                report.recovered.append(source.path)
            return
        transient = isinstance(loaded, Broken) and loaded.transient
        said_before = failure.problems if failure is not None else (
            (_broken_problem(key, previous),) if isinstance(previous, Broken) else ()
        )
        if not (unreadable and transient and said_before == problems):  # the same outage is said once
            report.failed.extend(problems)
        if good is not None and good.source.path == source.path:
            LOG.error("reload: %s; keeping the last good version", problems[0])
            failures[source.path] = Failure(source.stamp, problems, transient)
            table[key] = good
        else:
            table[key] = loaded

    for name, source in tree.interfaces.items():
        settle(name, source, retry=False)
    for plugin_key, source in tree.plugins.items():
        interface_source = tree.interfaces.get(plugin_key[1])
        # A plugin file that failed against the old interface may fit the new one.
        retry = interface_source is not None and interface_source.path in fresh and source.path in old.failures
        settle(plugin_key, source, retry)
    # A plugin file whose new version breaks a contract also keeps its last
    # good version, and a changed interface may break plugins that did not
    # change: bind every loaded pair the reload touched.
    for plugin_key, plugin_file in list(plugins.items()):
        customer, name = plugin_key
        interface = interfaces.get(name)
        if not isinstance(interface, LoadedInterface) or isinstance(plugin_file, Broken):
            continue
        if plugin_file.source.path not in fresh and interface.source.path not in fresh:
            continue
        binding = bind(interface, plugin_file, customer)
        if not binding.problems:
            continue
        report.failed.extend(binding.problems)
        previous = old.plugins.get(plugin_key)
        if (
            isinstance(previous, LoadedPlugins)
            and previous is not plugin_file
            and not bind(interface, previous, customer).problems
        ):
            LOG.error("reload: %s; keeping the last good version", binding.problems[0])
            plugins[plugin_key] = previous
            failures[plugin_file.source.path] = Failure(plugin_file.source.stamp, binding.problems)
    report.failed.extend(p for p in tree.problems if p not in old.tree.problems)
    for verb, paths in (
        ("added", report.added), ("changed", report.changed), ("removed", report.removed),
        ("recovered", report.recovered),
    ):
        for path in paths:
            LOG.info("reload: %s %s", verb, path)
    snapshot = Snapshot(tree, old.pins, interfaces=interfaces, plugins=plugins, failures=failures, recording=old.recording)
    return snapshot, report
